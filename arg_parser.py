"""Every option of the original command line, with its name and default, in one place.

Options the project has no use for in a given script are accepted (so the paper's
commands run verbatim) and say so in their help.
"""

import argparse

from dataset import DATASETS
from models import model_dict
from unlearn import DEFAULT_ALPHA, METHOD_DEFAULTS, METHOD_HELP, ORIGINAL_ALPHA, PRUNING_METHODS, UNLEARN_METHODS
from unlearn.SalUn import DEFAULT_RATIO
from unlearn.SCRUB import DEFAULTS as SCRUB_DEFAULTS
from unlearn.SCRUB import SCRUB_EPOCHS, SCRUB_LR
from unlearn.wfisher import DEFAULT_DAMPING

PRUNE_TYPES = ("lt", "pt", "rewind_lt")


class OneLineErrorParser(argparse.ArgumentParser):
    """An unknown option or bad value gets one line (not the whole usage) and exit 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser(description="Prune first, then unlearn (NeurIPS 2023 reproduction)"):
    parser = OneLineErrorParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    data = parser.add_argument_group("data")
    data.add_argument("--data", type=str, default="../data", help="folder holding CIFAR-10/100 or SVHN (torchvision layout)")
    data.add_argument(
        "--dataset",
        type=str,
        default="cifar10",
        choices=sorted(DATASETS),
        help="dataset; digits is bundled with scikit-learn and needs no download",
    )
    data.add_argument("--input_size", type=int, default=32, help="input size in pixels (informational: set by the dataset)")
    data.add_argument("--data_dir", type=str, default="./tiny-imagenet-200", help="Tiny-ImageNet folder (read, never modified)")
    data.add_argument("--num_workers", type=int, default=4, help="accepted for compatibility; data is held as tensors, no worker processes")
    data.add_argument("--num_classes", type=int, default=10, help="accepted for compatibility; the dataset sets the number of classes")
    data.add_argument("--no-aug", dest="no_aug", action="store_true", default=False, help="no training augmentation")
    data.add_argument(
        "--train_per_class",
        type=int,
        default=None,
        help="keep a fixed, seeded subset of N training images per class (after the validation split is set aside); default all",
    )
    data.add_argument(
        "--test_per_class",
        type=int,
        default=None,
        help="keep a fixed, seeded subset of M images per class of the validation and test splits",
    )
    data.add_argument(
        "--train_positions",
        type=str,
        default=None,
        help="train on these positions of the training split only (after the caps; a .txt or .npy file, or 3,17,42): a shadow "
        "model's half for U-LiRA. Forget sets are drawn from them, and the retain set is the rest of them",
    )

    model = parser.add_argument_group("model")
    model.add_argument("--arch", type=str, default="resnet18", choices=sorted(model_dict), help="model architecture")
    model.add_argument("--imagenet_arch", action="store_true", help="ImageNet stem (7x7 conv, max-pool) for resnet18/resnet50")
    model.add_argument(
        "--train_y_file", type=str, default="./labels/train_ys.pth", help="accepted for compatibility; ImageNet is not supported"
    )
    model.add_argument(
        "--val_y_file", type=str, default="./labels/val_ys.pth", help="accepted for compatibility; ImageNet is not supported"
    )

    general = parser.add_argument_group("general")
    general.add_argument("--seed", type=int, default=2, help="draws the forget set and seeds unlearning")
    general.add_argument(
        "--train_seed", type=int, default=None, help="seeds model initialisation and training (default: the same as --seed)"
    )
    general.add_argument("--gpu", type=int, default=0, help="CUDA device index (CPU when no CUDA)")
    general.add_argument("--workers", type=int, default=4, help="accepted for compatibility; unused")
    general.add_argument("--resume", action="store_true", help="continue from --checkpoint (main_imp.py) or skip finished stages")
    general.add_argument("--checkpoint", type=str, default=None, help="checkpoint file to resume from")
    general.add_argument("--save_dir", type=str, default=None, help="folder for checkpoints and results")
    general.add_argument("--mask", type=str, default=None, help="dense or pruned checkpoint to unlearn from")

    train = parser.add_argument_group("training")
    train.add_argument("--batch_size", type=int, default=256, help="batch size")
    train.add_argument("--lr", type=float, default=0.1, help="initial learning rate")
    train.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    train.add_argument("--weight_decay", type=float, default=5e-4, help="weight decay")
    train.add_argument("--epochs", type=int, default=182, help="epochs per state")
    train.add_argument("--warmup", type=int, default=0, help="epochs of linear learning-rate warm-up")
    train.add_argument("--print_freq", type=int, default=50, help="accepted for compatibility; progress is a tqdm bar")
    train.add_argument("--decreasing_lr", type=str, default="91,136", help="epochs at which the rate is multiplied by 0.1")
    speed = parser.add_argument_group("speed (off by default, so that results stay comparable with the paper)")
    speed.add_argument("--amp", action="store_true", help="train in bfloat16 autocast")
    speed.add_argument("--channels_last", action="store_true", help="channels-last memory format for the model and its inputs")
    speed.add_argument("--compile", action="store_true", help="torch.compile the model (slow start, faster steps; same state-dict keys)")

    pruning = parser.add_argument_group("pruning")
    pruning.add_argument("--prune", type=str, default="omp", help="pruning method of main_backdoor.py")
    pruning.add_argument("--pruning_times", type=int, default=1, help="number of states (state 0 is dense)")
    pruning.add_argument(
        "--rate",
        type=float,
        default=0.95,
        help="share of the remaining conv weights pruned after each state (FT_prune_bi: during unlearning)",
    )
    pruning.add_argument(
        "--prune_type",
        type=str,
        default="rewind_lt",
        choices=PRUNE_TYPES,
        help="rewind to: lt = initialisation, rewind_lt = epoch --rewind_epoch, pt = best dense weights",
    )
    pruning.add_argument("--random_prune", action="store_true", help="random instead of global L1 pruning")
    pruning.add_argument(
        "--rewind_epoch",
        type=int,
        default=0,
        help="main_imp.py: epoch of state 0 that rewind_lt rewinds to; main_backdoor.py: its OMP's rewind point (0: the initialisation); "
        "main_forget.py: k > 0 starts an iterative method from --rewind_pth with the schedule k epochs in",
    )
    pruning.add_argument(
        "--rewind_pth", type=str, default=None, help="weights an iterative unlearning method starts from when --rewind_epoch is not 0"
    )
    pruning.add_argument("--synflow_rounds", type=int, default=100, help="SynFlow: scoring rounds of the exponential sparsity schedule")

    unlearn = parser.add_argument_group("unlearning")
    methods = "; ".join(f"{name}: {text}" for name, text in METHOD_HELP.items())
    unlearn.add_argument("--unlearn", type=str, default="retrain", choices=list(UNLEARN_METHODS), help=f"unlearning method ({methods})")
    unlearn.add_argument(
        "--unlearn_lr", type=float, default=0.01, help=f"learning rate of the iterative methods (SCRUB, when left out: {SCRUB_LR:g})"
    )
    unlearn.add_argument(
        "--unlearn_epochs", type=int, default=10, help=f"epochs of the iterative methods (SCRUB, when left out: {SCRUB_EPOCHS})"
    )
    unlearn.add_argument("--num_indexes_to_replace", type=int, default=None, help="forget-set size (absent: the whole class)")
    unlearn.add_argument("--class_to_replace", type=int, default=0, help="class to forget from; -1 = random forgetting")
    unlearn.add_argument("--indexes_to_replace", type=str, default=None, help="explicit training positions: '3,17,42' or a .txt/.npy file")
    defaults = ", ".join(f"{k} {v:g}" for k, v in DEFAULT_ALPHA.items())
    unlearn.add_argument(
        "--alpha",
        type=float,
        default=None,
        help=f"method strength: FF noise, IU step, l1 weight (default per method: {defaults}; {ORIGINAL_ALPHA:g} for the others)",
    )
    unlearn.add_argument("--no-l1-epochs", dest="no_l1_epochs", type=int, default=0, help="l1-sparse: final epochs without the l1 penalty")
    unlearn.add_argument(
        "--iu_damping",
        type=int,
        default=DEFAULT_DAMPING,
        help="IU: damping N of the WoodFisher recursion, which reads N + 2 retain samples",
    )
    unlearn.add_argument(
        "--iu_chunk_size",
        type=int,
        default=None,
        help="IU: samples per batched per-sample-gradient call (default: a quarter of the free memory, at most 32 on CPU, 128 on GPU)",
    )
    unlearn.add_argument(
        "--ff_method",
        default="auto",
        choices=["auto", "measured", "loop", "batched", "grouped"],
        help="FF: how the per-class gradients are computed, all equal up to rounding "
        "(measured: the fastest after one timed batch each; auto: measured on CUDA, loop elsewhere)",
    )

    later = parser.add_argument_group("SalUn and SCRUB")
    later.add_argument(
        "--salun_ratio", type=float, default=DEFAULT_RATIO, help="SalUn: share of all weights it may move (the most salient)"
    )
    later.add_argument(
        "--mask_path", type=str, default=None, help="SalUn: a saliency mask made elsewhere (SalUn's format) instead of computing one"
    )
    later.add_argument(
        "--msteps",
        type=int,
        default=SCRUB_DEFAULTS["msteps"],
        help="SCRUB: epochs that start with a pass away from the teacher on the forget set",
    )
    later.add_argument("--kd_T", type=float, default=SCRUB_DEFAULTS["kd_T"], help="SCRUB: distillation temperature")
    later.add_argument(
        "--scrub_gamma", type=float, default=SCRUB_DEFAULTS["scrub_gamma"], help="SCRUB: weight of the retain set's cross-entropy"
    )
    later.add_argument(
        "--scrub_alpha", type=float, default=SCRUB_DEFAULTS["scrub_alpha"], help="SCRUB: weight of the retain set's KL to the teacher"
    )
    later.add_argument(
        "--forget_batch_size",
        type=int,
        default=SCRUB_DEFAULTS["forget_batch_size"],
        help="SCRUB: batch size of the pass over the forget set",
    )

    attack = parser.add_argument_group("attack")
    attack.add_argument("--attack", type=str, default="backdoor", help="attack of main_backdoor.py")
    attack.add_argument("--trigger_size", type=int, default=4, help="side of the square backdoor trigger, pixels")
    return parser


def parse_args(argv=None):
    """The options of every entry script; --train_seed left out takes --seed's value."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.train_seed is None:
        args.train_seed = args.seed
    given = given_options(argv)
    for option, value in METHOD_DEFAULTS.get(args.unlearn, {}).items():
        if option not in given:
            setattr(args, option, value)
    if args.indexes_to_replace is not None:
        if {"class_to_replace", "num_indexes_to_replace"} & given:
            parser.error("--indexes_to_replace lists the forget set itself: drop --class_to_replace / --num_indexes_to_replace")
        args.class_to_replace = None
    return args


def given_options(argv=None):
    """The options the command line sets (the others are at their defaults)."""
    probe = build_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def check_data_args(args):
    """The size caps, when given, keep at least one image per class."""
    from utils import UserError

    for option in ("train_per_class", "test_per_class"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise UserError(f"--{option} {value}: must be at least 1 (leave it out to keep every image)")


def check_training_args(args):
    """Check the options every training script uses; UserError names the option and the fix."""
    from models import IMAGENET_STEM_ARCHS
    from trainer import parse_milestones
    from utils import UserError

    if not args.save_dir:
        raise UserError("--save_dir is required: the folder for checkpoints and results")
    if args.epochs < 0:
        raise UserError(f"--epochs {args.epochs}: must be 0 or more")
    if args.lr <= 0:
        raise UserError(f"--lr {args.lr}: must be positive")
    if args.batch_size < 1:
        raise UserError(f"--batch_size {args.batch_size}: must be at least 1")
    if args.warmup < 0:
        raise UserError(f"--warmup {args.warmup}: must be 0 or more")
    check_data_args(args)
    if not 0 <= args.rate < 1:
        raise UserError(f"--rate {args.rate}: the share of weights to prune must be in [0, 1)")
    try:
        parse_milestones(args.decreasing_lr)
    except ValueError:
        raise UserError(f"--decreasing_lr {args.decreasing_lr!r}: expected comma-separated epochs, e.g. 91,136") from None
    if args.imagenet_arch and args.arch not in IMAGENET_STEM_ARCHS:
        raise UserError(f"--imagenet_arch applies to {', '.join(IMAGENET_STEM_ARCHS)}, not {args.arch}")


def check_unlearn_args(args):
    """Check and complete the unlearning options (forget set, method strength)."""
    import math

    from utils import UserError

    if args.unlearn_lr <= 0:
        raise UserError(f"--unlearn_lr {args.unlearn_lr}: must be positive")
    if args.unlearn_epochs < 0:
        raise UserError(f"--unlearn_epochs {args.unlearn_epochs}: must be 0 or more")
    if args.no_l1_epochs < 0:
        raise UserError(f"--no-l1-epochs {args.no_l1_epochs}: must be 0 or more")
    if args.iu_damping < 1:
        raise UserError(f"--iu_damping {args.iu_damping}: must be at least 1")
    if args.iu_chunk_size is not None and args.iu_chunk_size < 1:
        raise UserError(f"--iu_chunk_size {args.iu_chunk_size}: must be at least 1")
    if args.alpha is None:
        args.alpha = DEFAULT_ALPHA.get(args.unlearn, ORIGINAL_ALPHA)
    if not math.isfinite(args.alpha) or args.alpha < 0:
        raise UserError(f"--alpha {args.alpha:g}: must be a finite number, 0 or more (it scales the method's update or penalty)")
    if args.num_indexes_to_replace is not None and args.num_indexes_to_replace < 1:
        raise UserError(f"--num_indexes_to_replace {args.num_indexes_to_replace}: must be at least 1")
    if args.unlearn in PRUNING_METHODS:
        if not 0 <= args.rate < 1:
            raise UserError(f"--rate {args.rate}: the share of weights to prune must be in [0, 1)")
        if args.unlearn_epochs < 2:
            raise UserError(f"--unlearn {args.unlearn} prunes at the start of every second epoch: --unlearn_epochs must be at least 2")
    if args.rewind_epoch < 0:
        raise UserError(f"--rewind_epoch {args.rewind_epoch}: must be 0 or more")
    if not 0 < args.salun_ratio <= 1:
        raise UserError(f"--salun_ratio {args.salun_ratio}: the share of weights SalUn may move must be in (0, 1]")
    if args.msteps < 0:
        raise UserError(f"--msteps {args.msteps}: must be 0 or more")
    if not (math.isfinite(args.kd_T) and args.kd_T > 0):
        raise UserError(f"--kd_T {args.kd_T:g}: the temperature must be positive")
    for option in ("scrub_gamma", "scrub_alpha"):
        value = getattr(args, option)
        if not math.isfinite(value) or value < 0:
            raise UserError(f"--{option} {value:g}: must be a finite number, 0 or more")
    if args.forget_batch_size < 1:
        raise UserError(f"--forget_batch_size {args.forget_batch_size}: must be at least 1")
