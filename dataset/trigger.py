"""The backdoor trigger of main_backdoor.py: a square in the bottom-right corner (its value: the dataset record's)."""


def add_trigger(images, size, value):
    """A copy of `images` (uint8, N x C x H x W) with a size x size square set to `value`,
    2 pixels in from the bottom-right corner."""
    out = images.clone()
    out[:, :, -2 - size : -2, -2 - size : -2] = value
    return out
