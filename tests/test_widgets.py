"""The widgets' promises, checked on their artists: every inner step drawn, models switchable, grey and colour images."""
import pytest
import torch

from helpers.fewshot_widgets import FewShotEpisodeWidget, FewShotModel, as_picture
from helpers.models import ConvNet, SinusoidMLP
from helpers.widgets import MAX_STEPS, Learner, SinusoidAdaptationWidget


def params_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in model.named_parameters()}


@pytest.fixture
def sinusoid_widget() -> SinusoidAdaptationWidget:
    model = SinusoidMLP()
    return SinusoidAdaptationWidget([Learner("MAML", model, params_of(model), inner_lr=0.01)], k_shot=5, n_steps=1)


def test_every_inner_step_is_drawn_faint_and_the_chosen_one_bold(sinusoid_widget):
    widget = sinusoid_widget
    widget.steps_slider.value = 4
    faint, bold = widget.step_lines[0], widget.after_lines[0]
    assert [line.get_visible() for line in faint] == [step < 4 for step in range(1, MAX_STEPS)]
    trajectory = widget.predictions(widget.learners[0], 5)  # (steps + 1, grid)
    for step, line in enumerate(faint[:3], start=1):
        assert torch.allclose(torch.as_tensor(line.get_ydata()), trajectory[step])
        assert line.get_alpha() < 1 and line.get_linewidth() < bold.get_linewidth()
    assert torch.allclose(torch.as_tensor(bold.get_ydata()), trajectory[4])
    assert "faint: steps 1–3, bold: step 4" in widget.readout.value


def test_steps_redraw_in_place(sinusoid_widget):
    """A slider move updates the same artists; it never rebuilds the figure."""
    widget = sinusoid_widget
    artists_before = list(widget.ax.lines)
    widget.steps_slider.value = 10
    assert list(widget.ax.lines) == artists_before and sum(line.get_visible() for line in widget.step_lines[0]) == 9
    widget.steps_slider.value = 0
    assert not any(line.get_visible() for line in widget.step_lines[0])


def grey_and_colour_models() -> dict[str, FewShotModel]:
    torch.manual_seed(0)
    grey_net, colour_net = ConvNet(5), ConvNet(3, in_channels=3, hidden=8, image_size=20)
    grey = (torch.rand(12, 10, 28, 28) * 255).to(torch.uint8)  # (classes, examples, H, W)
    colour = (torch.rand(12, 10, 3, 20, 20) * 255).to(torch.uint8)  # (classes, examples, C, H, W)
    return {"grey 5-way": FewShotModel(grey_net, params_of(grey_net), grey, n_way=5, inner_lr=0.4),
            "colour 3-way": FewShotModel(colour_net, params_of(colour_net), colour, n_way=3, inner_lr=0.01)}


def test_explorer_switches_models_and_draws_grey_and_colour_images():
    explorer = FewShotEpisodeWidget(models=grey_and_colour_models(), k_shot=2, n_steps=1)
    assert explorer.model_selector.layout.display is None  # shown: there is a choice
    assert "5-way 2-shot" in explorer.readout.value and "model: grey 5-way" in explorer.readout.value
    assert len(explorer.support_images) == 5 and explorer.support_images[0][0].get_array().ndim == 2
    grey_png = explorer.image.value
    explorer.model_selector.value = "colour 3-way"
    assert "3-way 2-shot" in explorer.readout.value and explorer.n_way == 3 and explorer.inner_lr == 0.01
    assert len(explorer.support_images) == 3 and explorer.support_images[0][0].get_array().shape == (20, 20, 3)
    assert explorer.image.value != grey_png


def test_explorer_keeps_its_one_model_api():
    models = grey_and_colour_models()
    grey = models["grey 5-way"]
    explorer = FewShotEpisodeWidget(grey.model, grey.params, grey.images, n_way=5, inner_lr=0.4, k_shot=3, n_steps=5)
    assert explorer.model_selector.layout.display == "none"  # nothing to choose
    assert "5-way 3-shot, 5 steps" in explorer.readout.value and len(explorer.image.value) > 1000
    with pytest.raises(ValueError, match="either"):
        FewShotEpisodeWidget(grey.model, grey.params, grey.images, n_way=5, inner_lr=0.4, models=models)
    with pytest.raises(ValueError, match="either"):
        FewShotEpisodeWidget(grey.model, grey.params)


def test_pictures_for_imshow():
    assert as_picture(torch.rand(1, 28, 28)).shape == (28, 28)
    assert as_picture(torch.rand(3, 84, 84)).shape == (84, 84, 3)
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3 \\(colour\\) channels"):
        as_picture(torch.rand(2, 8, 8))
