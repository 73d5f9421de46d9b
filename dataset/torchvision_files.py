"""Datasets torchvision reads and downloads (CIFAR, SVHN, Fashion-MNIST): opened where they
are, downloaded into --data when absent, one clear line when neither works."""

import logging
import socket

from errors import UserError

log = logging.getLogger("unlearn_sparse")

DOWNLOAD_TIMEOUT_S = 30


def missing(name, folder, layout, reason):
    return UserError(
        f"{name} not found in {folder!r} (expected {layout}) and it could not be downloaded "
        f"({reason}); put the data there with --data, or use --dataset digits"
    )


def open_torchvision_dataset(cls, name, folder, layout, **kwargs):
    """Open a torchvision dataset, downloading it if absent; one clear line on failure."""
    try:
        return cls(folder, download=False, **kwargs)
    except RuntimeError:
        pass  # not there (or incomplete): try a download
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        log.info("%s not found in %s: downloading", name, folder)
        return cls(folder, download=True, **kwargs)
    except Exception as err:  # noqa: BLE001 - any download failure means the same to the user
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise missing(name, folder, layout, reason) from None
    finally:
        socket.setdefaulttimeout(previous)
