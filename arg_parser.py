"""Every option of the command line, grouped, with its name and default: the original's,
and the methods' own, which each method's record declares (unlearn/<method>.py) and
`parse_args()` resolves.

Options the project has no use for in a given script are accepted (so the paper's
commands run verbatim) and say so in their help.
"""

import argparse
import os

import calibration
from checkpoints import DEFAULT_CHECKPOINT_EVERY_S
from dataset import DATASETS, dataset_options, get_dataset
from errors import UserError
from models import IMAGENET_STEM_ARCHS, model_dict
from unlearn import METHODS, method_options
from unlearn.fisher import ORIGINAL_ALPHA
from utils import DEVICE_CHOICES

PRUNE_TYPES = ("lt", "pt", "rewind_lt")
STEM_MIN_SIDE = 128  # images this large (ImageNet's 224) take the ImageNet stem (7x7 conv, max-pool) on resnet18/50


class OneLineErrorParser(argparse.ArgumentParser):
    """An unknown option or bad value gets one line (not the whole usage) and exit 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser(description="Prune first, then unlearn (NeurIPS 2023 reproduction)"):
    parser = OneLineErrorParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        type=str,
        default="../data",
        help="folder of the dataset: CIFAR-10/100, SVHN or Fashion-MNIST (torchvision's layout), or a tree of class folders "
        "(imagenet, imagefolder: train/<class>/, val/<class>/)",
    )
    data.add_argument(
        "--dataset",
        type=str,
        default="cifar10",
        choices=sorted(DATASETS),
        help="dataset (" + "; ".join(f"{name}: {record.help}" for name, record in DATASETS.items()) + ")",
    )
    data.add_argument("--input_size", type=int, default=32, help="input size in pixels (informational: set by the dataset)")
    for option, readers in dataset_options().values():
        data.add_argument(
            option.spelling, dest=option.name, type=option.type, default=option.default, help=f"{option.help} [{', '.join(readers)}]"
        )
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
        "--train_y_file",
        type=str,
        default="./labels/train_ys.pth",
        help="accepted for compatibility; ImageNet's labels come from its class folders",
    )
    model.add_argument(
        "--val_y_file",
        type=str,
        default="./labels/val_ys.pth",
        help="accepted for compatibility; ImageNet's labels come from its class folders",
    )

    general = parser.add_argument_group("general")
    general.add_argument("--seed", type=int, default=2, help="draws the forget set and seeds unlearning")
    general.add_argument(
        "--train_seed", type=int, default=None, help="seeds model initialisation and training (default: the same as --seed)"
    )
    general.add_argument(
        "--device",
        type=str,
        default="auto",
        choices=DEVICE_CHOICES,
        help="where to run (auto: CUDA when a GPU is visible, else Apple MPS, else the CPU); "
        "under torchrun the process group's backend follows it",
    )
    general.add_argument(
        "--gpu",
        type=int,
        default=0,
        help="CUDA device index of a single process (under torchrun: the GPU of LOCAL_RANK, or the only one seen)",
    )
    general.add_argument("--workers", type=int, default=4, help="accepted for compatibility; unused")
    general.add_argument("--resume", action="store_true", help="continue from --checkpoint (main_imp.py) or skip finished stages")
    general.add_argument("--checkpoint", type=str, default=None, help="checkpoint file to resume from")
    general.add_argument(
        "--checkpoint_every_s",
        type=float,
        default=DEFAULT_CHECKPOINT_EVERY_S,
        help="write the resume checkpoint when this many seconds have passed since the last one "
        "(and at the end of each pruning state); 0: after every epoch. --resume repeats at most this long",
    )
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
    speed.add_argument(
        "--cudnn_benchmark",
        action="store_true",
        help="let cuDNN pick its fastest kernels: faster convolutions on a GPU, not repeatable bit for bit "
        "(off: deterministic cuDNN, as the original)",
    )
    speed.add_argument("--compile", action="store_true", help="torch.compile the model (slow start, faster steps; same state-dict keys)")
    speed.add_argument(
        "--sync_bn",
        action="store_true",
        help="under torchrun on GPUs: batch norm with the statistics of the global batch (SyncBatchNorm); "
        "without it each process normalises by its own share",
    )

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
    methods = "; ".join(f"{name}: {record.help}" for name, record in METHODS.items())
    unlearn.add_argument("--unlearn", type=str, default="retrain", choices=list(METHODS), help=f"unlearning method ({methods})")
    unlearn.add_argument(
        "--unlearn_lr", type=float, default=0.01, help=f"learning rate of the iterative methods{method_defaults('unlearn_lr')}"
    )
    unlearn.add_argument(
        "--unlearn_epochs", type=int, default=10, help=f"epochs of the iterative methods{method_defaults('unlearn_epochs')}"
    )
    unlearn.add_argument("--num_indexes_to_replace", type=int, default=None, help="forget-set size (absent: the whole class)")
    unlearn.add_argument("--class_to_replace", type=int, default=0, help="class to forget from; -1 = random forgetting")
    unlearn.add_argument("--indexes_to_replace", type=str, default=None, help="explicit training positions: '3,17,42' or a .txt/.npy file")
    unlearn.add_argument(
        "--alpha",
        type=float,
        default=None,
        help=f"method strength: FF noise, IU step, l1 weight{method_defaults('alpha')}; {ORIGINAL_ALPHA:g} for the others",
    )
    own = parser.add_argument_group("options of particular methods (in brackets: the methods that read them)")
    for option, readers in method_options().values():
        extra = {"choices": option.choices} if option.choices else {}
        own.add_argument(
            option.spelling,
            dest=option.name,
            type=option.type,
            default=option.default,
            help=f"{option.help} [{', '.join(readers)}]",
            **extra,
        )

    calibration.add_arguments(parser)

    attack = parser.add_argument_group("attack")
    attack.add_argument("--attack", type=str, default="backdoor", help="attack of main_backdoor.py")
    attack.add_argument("--trigger_size", type=int, default=4, help="side of the square backdoor trigger, pixels")
    return parser


def method_defaults(option):
    """' (default per method: fisher_new 1e-07, ...)' for the help of a shared option some methods set; '' when none does."""
    values = [f"{name} {record.resolved_defaults()[option]:g}" for name, record in METHODS.items() if option in record.resolved_defaults()]
    return f" (when left out, per method: {', '.join(values)})" if values else ""


def parse_args(argv=None):
    """The options of every entry script, every default resolved: what a method can be called with.

    --train_seed left out takes --seed's value; an option the --unlearn method sets (its
    record's alpha and defaults) takes the method's value when left out; --alpha that no
    method sets takes the original's 0.2.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.train_seed is None:
        args.train_seed = args.seed
    given = given_options(argv)
    for option, value in METHODS[args.unlearn].resolved_defaults().items():
        if option not in given:
            setattr(args, option, value)
    if args.alpha is None:
        args.alpha = ORIGINAL_ALPHA
    if get_dataset(args.dataset).image_side(args) >= STEM_MIN_SIDE and args.arch in IMAGENET_STEM_ARCHS:
        args.imagenet_arch = True  # 224-pixel images: the 7x7 stem and max-pool, as torchvision's ResNets
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
    """The size caps, when given, keep at least one image per class; the dataset's own options pass its record's checks."""
    for option in ("train_per_class", "test_per_class"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise UserError(f"--{option} {value}: must be at least 1 (leave it out to keep every image)")
    for option in get_dataset(args.dataset).options:
        problem = option.check(getattr(args, option.name)) if option.check else None
        if problem:
            raise UserError(problem)


def check_checkpoint_args(args):
    import math

    if not math.isfinite(args.checkpoint_every_s) or args.checkpoint_every_s < 0:
        raise UserError(f"--checkpoint_every_s {args.checkpoint_every_s}: must be 0 (every epoch) or a number of seconds")


def check_training_args(args):
    """Check the options every training script uses; UserError names the option and the fix."""
    from models import IMAGENET_STEM_ARCHS
    from trainer import parse_milestones

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
    check_checkpoint_args(args)
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
    """Check the unlearning options (forget set, method strength, every method option its record checks)."""
    import math

    check_checkpoint_args(args)
    if args.unlearn_lr <= 0:
        raise UserError(f"--unlearn_lr {args.unlearn_lr}: must be positive")
    if args.unlearn_epochs < 0:
        raise UserError(f"--unlearn_epochs {args.unlearn_epochs}: must be 0 or more")
    if not math.isfinite(args.alpha) or args.alpha < 0:
        raise UserError(f"--alpha {args.alpha:g}: must be a finite number, 0 or more (it scales the method's update or penalty)")
    if args.num_indexes_to_replace is not None and args.num_indexes_to_replace < 1:
        raise UserError(f"--num_indexes_to_replace {args.num_indexes_to_replace}: must be at least 1")
    if METHODS[args.unlearn].prunes:
        if not 0 <= args.rate < 1:
            raise UserError(f"--rate {args.rate}: the share of weights to prune must be in [0, 1)")
        if args.unlearn_epochs < 2:
            raise UserError(f"--unlearn {args.unlearn} prunes at the start of every second epoch: --unlearn_epochs must be at least 2")
    if args.rewind_epoch < 0:
        raise UserError(f"--rewind_epoch {args.rewind_epoch}: must be 0 or more")
    for option, _ in method_options().values():
        problem = option.check(getattr(args, option.name)) if option.check else None
        if problem:
            raise UserError(problem)


def check_imp_args(args):
    """main_imp.py / main_synflow.py (and retrain_pipeline's pruning run): the training options and the pruning schedule."""
    check_training_args(args)
    if args.pruning_times < 1:
        raise UserError(f"--pruning_times {args.pruning_times}: must be at least 1 (state 0 is the dense model)")
    if args.prune_type == "rewind_lt" and args.pruning_times > 1 and not 1 <= args.rewind_epoch <= args.epochs:
        raise UserError(
            f"--prune_type rewind_lt --rewind_epoch {args.rewind_epoch}: the rewind point must be an epoch in 1..{args.epochs} "
            "of state 0 (use --prune_type lt to rewind to the initialisation)"
        )
    if args.resume and args.checkpoint and not os.path.isfile(args.checkpoint):
        raise UserError(f"--checkpoint {args.checkpoint}: file not found")
