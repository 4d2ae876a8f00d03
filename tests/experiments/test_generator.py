import json

import pytest
import torch

from mirage.benchmarks.question import Benchmark
from mirage.experiments.generator import run_generator
from mirage.experiments.generator_train import (TrainConfig, advantages, policy_loss, reinforce_update,
                                                train_generator)
from mirage.inputs.generator import (GeneratorConfig, GeneratorInput, QuestionGenerator, draw_noise, gaussian_log_prob,
                                    to_pixels)
from mirage.runs import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = GeneratorConfig(resolution=8, channels=(8, 16), cond_dim=16, steps=3, text_layers=1)


def test_reinforce_estimator_moves_a_gaussian_policy_toward_reward():
    # 1-D policy x ~ N(mu, 1) with reward x: the clipped surrogate's gradient must raise mu (d loss / d mu < 0)
    mu = torch.zeros(1, requires_grad=True)
    x = torch.randn(512, 1, generator=torch.Generator().manual_seed(0))  # samples of N(0, 1), i.e. at mu = 0
    old = gaussian_log_prob(x, mu.detach().expand_as(x), torch.tensor(1.0))
    new = gaussian_log_prob(x, mu.expand_as(x), torch.tensor(1.0))
    policy_loss(new[None], old[None], advantages(x[:, 0]), clip=0.2).backward()
    assert mu.grad.item() < 0
    # group baselines: each group's own mean is subtracted
    adv = advantages(torch.tensor([1.0, 3.0, 10.0, 10.0]), torch.tensor([0, 0, 1, 1]))
    assert adv[2] == adv[3] == 0 and adv[0] < 0 < adv[1]


def test_reinforce_raises_expected_brightness():
    """A toy reward (mean brightness): REINFORCE steps raise its expected value; the same steps with the advantages
    negated lower it."""
    torch.manual_seed(0)
    init = QuestionGenerator(TINY, 4).state_dict()
    emb, mask = torch.randn(1, 3, 4), torch.ones(1, 3, dtype=torch.long)
    probe = draw_noise(64, TINY.steps, (3, 8, 8), torch.Generator().manual_seed(1))

    def brightness(x):
        return to_pixels(x, 8).mean((1, 2, 3))

    expected = {}
    for sign in (0, 1, -1):
        net = QuestionGenerator(TINY, 4)
        net.load_state_dict(init)

        def cond(n):
            return net.condition(emb, mask).expand(n, -1, -1), mask.expand(n, -1)

        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for step in range(8 if sign else 0):
            with torch.no_grad():
                noise = draw_noise(16, TINY.steps, (3, 8, 8), torch.Generator().manual_seed(10 + step))
                traj = net.sample(*cond(16), noise)
            reinforce_update(net, traj, lambda: cond(16), sign * advantages(brightness(traj.final)), opt,
                             TrainConfig())
        with torch.no_grad():
            expected[sign] = float(brightness(net.sample(*cond(64), probe).final).mean())
    assert expected[1] > expected[0] + 0.005 and expected[-1] < expected[0] - 0.005


def test_checkpoint_resume_equals_uninterrupted(tiny_model, small_bench, tmp_path):
    train = small_bench.questions[:4]
    cfg = TrainConfig(steps=4, questions=2, samples=2, checkpoint_every=2, lr=1e-3)
    states = {}
    for name, stops in (("whole", [None]), ("killed", [2, None])):
        gen = GeneratorInput(tiny_model, 1, TINY)
        ckpt = tmp_path / name / "gen.ckpt.pt"
        for stop in stops:
            gen = GeneratorInput(tiny_model, 1, TINY)  # a fresh process: everything comes from the checkpoint
            history = train_generator(tiny_model, small_bench, train, gen, cfg, ckpt, stop_after=stop)
            if stop is not None:
                assert len(history) == stop and torch.load(ckpt, weights_only=False)["step"] == stop
        states[name] = (gen.state_dict(), history)
    (a, ha), (b, hb) = states["whole"], states["killed"]
    assert ha == hb and [h["step"] for h in ha] == [1, 2, 3, 4]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_reward_curve_rises_on_a_tiny_setting(tiny_model, small_bench):
    """Two training questions, reward p(correct): REINFORCE lifts the reward from the first steps to the last."""
    train = small_bench.questions[:2]
    gen = GeneratorInput(tiny_model, 1, TINY, seed=0)
    cfg = TrainConfig(steps=16, questions=2, samples=4, lr=1e-2, checkpoint_every=100)
    history = train_generator(tiny_model, small_bench, train, gen, cfg)
    rewards = [h["reward"] for h in history]
    assert sum(rewards[-4:]) / 4 > sum(rewards[:4]) / 4


def test_run_generator_writes_rows_artifacts_and_summary(tiny_model, small_bench, tmp_path):
    bench = Benchmark("shapes", "test", small_bench.questions[:10])
    run = RunDir.open(tmp_path / "run", {"x": 1})
    out = run_generator(tiny_model, bench, run, train=6, steps=2, config=TINY, questions=2, samples=2,
                        universal_steps=0, eval_train=2)
    sources = {r["source"] for r in run.rows()}
    assert sources == {"generator-reinforce", "generator-reinforce-train", "blank", "noise"}
    assert set(out["heldout"]) == {"generator-reinforce", "blank", "noise"} and out["n_heldout"] == 4
    art = run.artifacts_dir
    assert (art / "generator-reinforce.safetensors").exists() and (art / "generator-reinforce.ckpt.pt").exists()
    assert len(json.loads((art / "generator-reinforce.history.json").read_text())) == 2
    assert {p.stem for p in (art / "generator-reinforce").glob("*.png")} == set(out["samples"])
    assert json.loads((run.path / "generator-reinforce.summary.json").read_text())["reward_last"] == out["reward_last"]


def test_universal_baseline_runs_the_generators_steps(tiny_model, small_bench, tmp_path):
    # `--steps 3` bounds the whole run: the universal-pixels baseline ran 30 steps whatever the flag said.
    bench = Benchmark("shapes", "test", small_bench.questions[:8])
    run = RunDir.open(tmp_path / "run", {"x": 1})
    run_generator(tiny_model, bench, run, train=4, steps=2, config=TINY, questions=2, samples=2, eval_train=2)
    assert len(json.loads((run.artifacts_dir / "pixels-universal.history.json").read_text())) == 2
