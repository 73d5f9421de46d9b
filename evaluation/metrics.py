"""Accuracy per split, the two membership-inference evaluations, the paper's metrics."""

from trainer import NonFiniteOutputs, evaluate

from .SVC_MIA import SVC_MIA


def split_accuracies(model, loaders):
    """{split: top-1 accuracy in percent} for each (evaluation) loader; NonFiniteOutputs
    naming the split when the model's logits are not all finite (the attacks would fail on them)."""
    accuracies = {}
    for name, loader in loaders.items():
        try:
            accuracies[name] = evaluate(model, loader, require_finite=True)
        except NonFiniteOutputs as bad:
            bad.split = name
            raise
    return accuracies


def mia_forget_efficacy(model, retain, forget, test, cap=None):
    """Shadow members: the first len(test) retain samples; shadow non-members: test;
    targets: the forget set as non-members. Higher = the forget set looks unseen.
    `cap`: at most that many shadow members and non-members, each drawn at random."""
    if cap is None:
        shadow_train, shadow_test = retain.subset(0, test.num_samples), test
    else:
        n = min(cap, test.num_samples)
        shadow_train, shadow_test = retain.drawn(n), test.drawn(n)
    return SVC_MIA(shadow_train=shadow_train, target_train=None, target_test=forget, shadow_test=shadow_test, model=model)


def mia_training_privacy(model, retain, test, cap=None):
    """With h = len(test) // 2: shadow members retain[:h], target members retain[h:],
    shadow non-members test[:h], target non-members test[h:]. A retain set smaller than
    the test set (a U-LiRA shadow model's) is split in half the same way, h = len(retain) // 2,
    so that target members remain. `cap`: h is at most cap / 2, and 2h retain and 2h test
    samples are drawn at random, then halved."""
    h = min(test.num_samples, retain.num_samples, cap if cap is not None else test.num_samples) // 2
    if cap is not None:
        retain, test = retain.drawn(2 * h), test.drawn(2 * h)
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
