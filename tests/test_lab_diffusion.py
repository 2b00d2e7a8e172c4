"""vision/201/diffusion: the forward noising is diffusers' own, the objective is the noise's
squared error with the null class mixed in, guidance mixes the two answers as written, the
samplers take a perfect denoiser back to its image, a short run learns and draws its figures,
the page samples a digit, and bad input is answered in one line."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler
from torch import nn

from deepscape.config import ConfigError
from deepscape.lab import run_lab
from deepscape.labs.vision.l201_diffusion import NoisePrediction, NoiseSchedule, page_for
from deepscape.labs.vision.l201_diffusion_sampling import guided_noise, sample
from deepscape.runs import RunStore

DIFFUSION = "vision/201/diffusion"
# ~60 steps of a two-level U-Net 8 channels wide, a judge of one epoch, a few samples: ~30 s
TINY = ["channels=8,16", "attention=false", "max_steps=60", "batch_size=32", "eval_every=30",
        "samples=20", "guidance=0,2", "samplers=ddim-5", "reference=ddpm-20",
        "reference_samples=10", "judge_steps=90", "threads=1"]  # fmt: skip


def test_the_forward_noising_is_diffusers_add_noise():
    ours = NoiseSchedule(1000)
    theirs = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    torch.testing.assert_close(ours.alphas_cumprod, theirs.alphas_cumprod, rtol=0, atol=0)
    x0 = torch.rand(16, 1, 28, 28) * 2 - 1
    eps, t = torch.randn_like(x0), torch.randint(0, 1000, (16,))
    torch.testing.assert_close(ours.noise(x0, t, eps), theirs.add_noise(x0, eps, t))
    # the last step leaves almost nothing of the image: what sampling starts from is pure noise
    assert ours.alphas_cumprod[-1].sqrt() < 0.01 and ours.alphas_cumprod[0] > 0.999


class Spy(nn.Module):
    """A denoiser that answers `answer(x_t, t)` and remembers the labels it was shown."""

    def __init__(self, answer):
        super().__init__()
        self.answer, self.seen = answer, []
        self.weight = nn.Parameter(torch.zeros(()))  # a module with a device

    def forward(self, x, t, labels):
        self.seen.append(labels)
        return self.answer(x, t) + 0 * self.weight


def test_the_objective_is_the_noises_squared_error_with_the_null_class_mixed_in():
    schedule = NoiseSchedule(1000)
    batch = (torch.rand(2000, 1, 4, 4), torch.randint(0, 10, (2000,)))
    task = NoisePrediction(schedule=schedule, null_class=10, label_dropout=0.25)
    says_zero = Spy(lambda x, t: torch.zeros_like(x))
    with torch.no_grad():
        loss, _ = task.loss(says_zero, batch)
    assert loss.item() == pytest.approx(
        1.0, abs=0.03
    )  # guessing no noise misses all of it: E[ε²] = 1
    dropped = (says_zero.seen[-1] == 10).float().mean()
    assert 0.2 < dropped < 0.3 and (says_zero.seen[-1][says_zero.seen[-1] < 10] ==
                                    batch[1][says_zero.seen[-1] < 10]).all()  # fmt: skip
    says_zero.eval()  # validation: the same t and ε every time, and every label kept
    assert task.loss(says_zero, batch)[0] == task.loss(says_zero, batch)[0]
    assert (says_zero.seen[-1] == batch[1]).all()


def test_guidance_is_the_conditional_answer_pushed_away_from_the_unconditional():
    def model(x, t, labels):  # a "noise" that is each image's label
        return labels.float().view(-1, 1, 1, 1).expand_as(x)

    x, labels = torch.zeros(3, 1, 2, 2), torch.tensor([1, 2, 3])
    guided = guided_noise(model, x, torch.tensor(5), labels, 2.0, null=10)
    torch.testing.assert_close(guided[:, 0, 0, 0], 3 * labels.float() - 2 * 10)  # (1+w)c − w∅
    torch.testing.assert_close(guided_noise(model, x, torch.tensor(5), labels, 0.0, null=10),
                               model(x, None, labels))  # fmt: skip


@pytest.mark.parametrize("sampler", ["ddim-20", "ddim-50", "ddpm-1000"])
def test_a_sampler_takes_a_perfect_denoiser_back_to_its_image(sampler):
    """A denoiser that knows the image answers the exact noise of any x_t; every sampler then
    ends on that image (DDPM's fresh noise at each step cancels out as well)."""
    schedule = NoiseSchedule(1000)
    image = torch.zeros(1, 1, 28, 28)
    image[..., 6:22, 12:16] = 1.0  # a "1", in [0, 1]
    x0 = image * 2 - 1

    def exact_noise(x, t):
        alpha_bar = schedule.alphas_cumprod[t]
        return (x - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()

    made = sample(Spy(exact_noise), schedule, sampler, torch.tensor([1, 1]), 0.0, null=10,
                  seed=0, keep=2)  # fmt: skip
    assert (made.images - image).abs().max() < 0.02
    assert made.trajectory.shape[:2] == (8, 2) and made.moments[0] == 1000
    assert made.moments[-1] == 0 and made.moments == sorted(made.moments, reverse=True)


def test_ddim_recovers_the_image_when_the_noise_is_overshot_as_guidance_does():
    """Guidance amplifies ε̂, so x₀ predicted from it falls outside [−1, 1] and is clipped. DDIM
    must then step with the noise that agrees with the clipped x₀: it still lands on the image,
    where the unclipped noise left a blot (half the pixels off by 0.5 on average)."""
    schedule = NoiseSchedule(1000)
    image = torch.zeros(1, 1, 28, 28)
    image[..., 6:22, 12:16] = 1.0
    x0 = image * 2 - 1

    def overshot_noise(x, t):
        alpha_bar = schedule.alphas_cumprod[t]
        return 3 * (x - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()

    made = sample(Spy(overshot_noise), schedule, "ddim-50", torch.tensor([1]), 0.0, null=10, seed=0)
    assert (made.images - image).abs().max() < 0.02


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    store = RunStore(tmp_path_factory.mktemp("diffusion"))
    return run_lab(DIFFUSION, TINY, store=store, show_progress=False), store


@pytest.mark.slow
def test_a_short_run_learns_the_noise_and_draws_its_figures(tiny_run):
    run, store = tiny_run
    metrics = run.summary["metrics"]
    first = run.history("step")[0]["loss"]
    assert first > 0.8  # an untrained net misses about all of ε
    assert metrics["final_val_loss"] < 0.25 * first  # 60 steps: ~0.12 here
    assert metrics["judge_test_accuracy"] > 0.8  # three epochs of mnist-5k
    table = run.summary["sampling"]["table"]
    assert [(r["sampler"], r["guidance"], r["images"]) for r in table] == [
        ("ddim-5", 0.0, 20), ("ddim-5", 2.0, 20), ("ddpm-20", 2.0, 10)]  # fmt: skip
    assert metrics["class_accuracy"] == metrics["accuracy_ddim5_w2"]
    assert (
        0 < metrics["fid_floor_halves"] < metrics["fid_floor_same_size"] < metrics["fid_ddim5_w2"]
    )
    assert "gap_to_reference_ddim5" in metrics
    judge = store.get(run.summary["judge"]["run"])
    assert judge.summary["lab"] == "vision/101/digits" and judge.config["model"] == "cnn"
    figures = {p.stem for p in (run.dir / "figures").glob("*.png")}
    assert {"curves", "trajectories", "samples_by_class", "quality"} <= figures


@pytest.mark.slow
def test_the_page_samples_the_digit_asked_for(tiny_run):
    run, _ = tiny_run
    app = page_for(run)
    (respond,) = [f.fn for f in app.fns.values() if f.api_name == "sample"]
    picture, said = respond("7", 2.0, "ddim-10")
    assert picture.size == (112, 112) and "of 16 judged a 7" in said


@pytest.mark.slow
def test_a_judge_that_is_not_a_digits_cnn_is_refused(tiny_run):
    run, store = tiny_run
    with pytest.raises(ConfigError, match="is a run of vision/201/diffusion: pick a vision/101"):
        run_lab(DIFFUSION, [*TINY, f"judge={run.id}"], store=store, show_progress=False)


def test_bad_input_is_one_line_that_names_the_fix(store):
    for items, fix in [
        (["guidance=0,-1"], "give scales ≥ 0"),
        (["shown_guidance=3"], "is not among guidance=0,1,2,4: add it"),
        (["samplers=euler-20"], "unknown sampler 'euler-20': name one ddpm-N or ddim-N"),
        (["reference=ddim-2000"], "give 1 to timesteps (1000)"),
        (["channels=16,32,64,64"], "give 2 or 3"),
        (["label_dropout=0"], "keep it above 0"),
        (["judge=nobody"], "no such run"),
    ]:
        with pytest.raises(ConfigError) as error:
            run_lab(DIFFUSION, items, store=store, show_progress=False)
        assert fix in str(error.value) and "\n" not in str(error.value), items
    assert store.list() == []  # nothing trained, nothing kept
