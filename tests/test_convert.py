"""Converting models that timm builds: weights kept, softmax output unchanged, Sinkhorn compiled by asap."""

import pytest
import timm
import torch
from timm.layers import Attention as TimmAttention

import asap
from asap.compiler import calibration_report
from asap.nn import ASAP, Attention, Sinkhorn, convert


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_patch16_224"])
def test_softmax_conversion_keeps_the_logits(name):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = model(images)
        converted = convert(model, "softmax")
        logits = converted(images)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert converted.state_dict().keys() == model.state_dict().keys()
    assert all(type(block.attn) is TimmAttention for block in model.blocks), "a copy: the original is untouched"
    assert all(isinstance(block.attn, Attention) for block in converted.blocks)
    sinkhorn = convert(model, "sinkhorn", n_iters=2)
    with torch.no_grad():
        assert not torch.allclose(sinkhorn(images), expected, atol=1e-3), "another normaliser changes the output"


def test_a_converted_sinkhorn_model_compiles():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2)
    sinkhorn = convert(model.eval(), "sinkhorn", n_iters=3, inplace=True)
    assert sinkhorn is model and all(isinstance(b.attn.normaliser, Sinkhorn) for b in model.blocks)
    batches = [(torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long)) for _ in range(3)]
    student = asap.compile(sinkhorn, batches, slices=8, fit="ridge", num_batches=2, holdout_batches=1)
    report = calibration_report(student)
    assert len(report) == 2 * 3 and report.plan_error.notna().all()  # two layers, three heads each
    assert all(isinstance(b.attn.normaliser, ASAP) for b in student.blocks)
    with torch.no_grad():
        assert torch.isfinite(student(batches[0][0])).all()


def test_conversion_refuses_what_it_cannot_keep():
    class GatedAttention(TimmAttention):
        def forward(self, x, attn_mask=None):
            return super().forward(x, attn_mask) * 2

    with pytest.raises(ValueError, match="overrides \\['forward'\\]"):
        convert(torch.nn.Sequential(GatedAttention(16, num_heads=2)), "softmax")
    with pytest.raises(ValueError, match="no timm Attention"):
        convert(torch.nn.Linear(2, 2), "softmax")
    with pytest.raises(ValueError, match="unknown attention normaliser"):
        convert(timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1), "cosine")
