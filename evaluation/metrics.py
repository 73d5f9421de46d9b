"""Accuracy per split, the two membership-inference evaluations, the paper's metrics."""

from trainer import evaluate

from .SVC_MIA import SVC_MIA


def split_accuracies(model, loaders):
    """{split: top-1 accuracy in percent} for each (evaluation) loader."""
    return {name: evaluate(model, loader) for name, loader in loaders.items()}


def mia_forget_efficacy(model, retain, forget, test):
    """Shadow members: the first len(test) retain samples; shadow non-members: test;
    targets: the forget set as non-members. Higher = the forget set looks unseen."""
    return SVC_MIA(shadow_train=retain.subset(0, test.num_samples), target_train=None, target_test=forget, shadow_test=test, model=model)


def mia_training_privacy(model, retain, test):
    """With h = len(test) // 2: shadow members retain[:h], target members retain[h:],
    shadow non-members test[:h], target non-members test[h:]. A retain set smaller than
    the test set (a U-LiRA shadow model's) is split in half the same way, h = len(retain) // 2,
    so that target members remain."""
    h = min(test.num_samples, retain.num_samples) // 2
    return SVC_MIA(
        shadow_train=retain.subset(0, h),
        target_train=retain.subset(h, None),
        target_test=test.subset(h, None),
        shadow_test=test.subset(0, h),
        model=model,
    )


def paper_metrics(result):
    """UA, RA, TA, MIA-Efficacy (percent) and RTE (minutes) from an evaluation result."""
    acc = result["accuracy"]
    return {
        "UA": 100.0 - acc["forget"],
        "RA": acc["retain"],
        "TA": acc["test"],
        "MIA-Efficacy": 100.0 * result["SVC_MIA_forget_efficacy"]["confidence"],
        "RTE": result["unlearn_seconds"] / 60.0,
    }
