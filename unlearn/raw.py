"""raw: no unlearning. The model is evaluated as loaded: the "Original" row of a table."""


def raw(data_loaders, model, criterion, args):
    return model
