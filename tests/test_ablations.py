"""Each ablation bundle sets exactly the switches of its column (docs/algorithms/soft_qmix.md, "Ablations")."""

from __future__ import annotations

import pytest

# The table's columns: QMIX = {qmix, eps_greedy, no soft, no f, no g}; +entropy = {qmix, softmax, soft, f=id};
# +f = {qmix, softmax, soft, use_f} with alpha 0.005; Soft-QMIX (paper) = {qmix, softmax, soft, use_f, use_g};
# released = {sum, softmax, soft, use_f, use_g, g_residual, weighted_td, alpha 0.03, the entropy leak};
# Ablation_absolute = the paper form without abs().
TABLE = {
    "qmix": dict(mixer="qmix", behaviour="eps_greedy", soft_target=False, use_f=False, use_g=False),
    "entropy": dict(mixer="qmix", behaviour="softmax", soft_target=True, use_f=False, use_g=False, alpha=0.03),
    "function_f": dict(mixer="qmix", behaviour="softmax", soft_target=True, use_f=True, use_g=False, alpha=0.005),
    "full": dict(mixer="qmix", behaviour="softmax", soft_target=True, use_f=True, use_g=True, alpha=0.03),
    "release": dict(
        mixer="sum",
        behaviour="softmax",
        soft_target=True,
        use_f=True,
        use_g=True,
        g_residual=True,
        weighted_td=True,
        alpha=0.03,
        mask_entropy_after_termination=False,
    ),
    "no_abs": dict(mixer="qmix", behaviour="softmax", soft_target=True, use_f=True, use_g=True, nonneg=False),
}
# Unless the row says otherwise, every bundle has: no residual, abs() on, no TD weighting, masked entropy.
DEFAULTS = dict(g_residual=False, nonneg=True, weighted_td=False, mask_entropy_after_termination=True)


@pytest.mark.parametrize("ablation", sorted(TABLE))
def test_bundle_sets_exactly_its_switches(compose_train, ablation: str) -> None:
    algo = compose_train(["algo=soft_qmix", f"ablation={ablation}"]).algo
    expected = {**DEFAULTS, **TABLE[ablation]}
    got = {key: (algo[key].name if hasattr(algo[key], "name") else algo[key]) for key in expected}
    assert got == expected
    assert algo.variant == ablation
