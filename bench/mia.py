"""Membership inference: the five shadow SVCs fit in parallel threads vs one after another.

    python bench/mia.py [--n 2000]

Both attacks of main_forget.py (forget efficacy and training privacy) on the outputs of
a small model over random images, CIFAR-10-like in proportion: n shadow members, n
shadow non-members, n forget targets, 2n member / n non-member privacy targets.
"""

import argparse

import torch
from common import best_time, line  # noqa: E402
from torch import nn

from dataset import ImageSet, TensorLoader  # noqa: E402
from evaluation import SVC_MIA  # noqa: E402
from evaluation.SVC_MIA import default_workers  # noqa: E402


def measure(n=2000):
    """(sequential seconds, parallel seconds) for both attacks."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    with torch.no_grad():
        model[1].weight.mul_(20)  # spread the confidences

    def loader(size):
        data = ImageSet(torch.randint(0, 256, (size, 3, 8, 8), dtype=torch.uint8, generator=g), torch.randint(0, 10, (size,), generator=g))
        return TensorLoader(data, batch_size=1024)

    shadow_in, shadow_out, forget, members, non_members = loader(n), loader(n), loader(n), loader(2 * n), loader(n)

    def both(workers):
        efficacy = SVC_MIA(shadow_in, None, forget, shadow_out, model, workers=workers)
        privacy = SVC_MIA(shadow_in, members, non_members, shadow_out, model, workers=workers)
        return efficacy, privacy

    t_seq, seq = best_time(lambda: both(1), torch.device("cpu"), repeats=1)
    t_par, par = best_time(lambda: both(default_workers()), torch.device("cpu"), repeats=1)
    assert seq == par, "parallel fitting changed the scores"
    return t_seq, t_par


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    t_seq, t_par = measure(args.n)
    print(f"{default_workers()} threads")
    print(line("membership_inference", t_seq, t_par))


if __name__ == "__main__":
    main()
