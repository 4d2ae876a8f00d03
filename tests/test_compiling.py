"""`compile_blocks`: which blocks it compiles, and that they are the ones the model calls."""

import torch
from torch import nn

from mirage.compiling import compile_blocks
from mirage.models.cambrian.config import tiny_config
from mirage.models.cambrian.towers import VisionTower


def convnext_tower(depths=(2, 3)) -> VisionTower:
    cfg = next(t for t in tiny_config(8).towers if t.arch == "convnext")
    cfg.config = {**cfg.config, "depths": list(depths)}
    torch.manual_seed(0)
    return VisionTower(cfg).eval()


def test_convnext_layers_are_the_blocks_the_tower_runs_compiled():
    """ConvNeXt's stages hold its layers; Cambrian's tower runs the layers one by one (every stage's map is read), so
    compiling the stages would compile nothing that runs. Each layer must be traced, and give the eager result."""
    tower = convnext_tower()
    x = torch.randn(2, 3, 64, 64)
    eager_x = x.clone().requires_grad_(True)
    eager = tower(eager_x)
    eager.square().sum().backward()

    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    assert compile_blocks(tower, counting) == 5  # 2 + 3 layers; the stages' list is descended into
    compiled = {type(m).__name__ for m in tower.modules() if getattr(m, "_compiled_call_impl", None) is not None}
    assert compiled == {"ConvNextLayer"}
    comp_x = x.clone().requires_grad_(True)
    out = tower(comp_x)
    out.square().sum().backward()
    assert graphs, "no ConvNeXt layer was traced: the compiled modules are not the ones the tower calls"
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(comp_x.grad, eager_x.grad)
    torch._dynamo.reset()


def test_outermost_repeated_blocks_are_compiled_whole():
    """A decoder layer's own lists of one class (here two heads) are traced with it, not compiled apart; a list of
    mixed classes is not a list of repeated blocks."""
    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])

        def forward(self, x):
            return sum(h(x) for h in self.heads)

    model = nn.Module()
    model.layers = nn.ModuleList([Layer(), Layer(), Layer()])
    model.mixed = nn.ModuleList([nn.Linear(4, 4), nn.ReLU()])
    assert compile_blocks(model, "eager") == 3
    compiled = [m for m in model.modules() if getattr(m, "_compiled_call_impl", None) is not None]
    assert compiled == list(model.layers)
    torch._dynamo.reset()
