"""Grad-CAM against an independent implementation: Captum's `LayerGradCam` on the reference
PyTorch EfficientNet-Lite0 (efficientnet-lite-pytorch with the same packaged ImageNet weights)
carrying the same trained head, on real photos (the shared cats_and_dogs validation set).

The two share nothing but the weights: another framework, another network implementation,
another gradient and another Grad-CAM. The maps on the 7x7 feature grid must agree to float
precision (r >= 0.999: a Grad-CAM on the wrong layer still correlates about 0.93, so the issue's
r >= 0.9 would not catch it), and the upsampled maps at 224 x 224 at r >= 0.9 (PIL and torch
interpolate the grid differently at the borders)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
reference_impl = pytest.importorskip("efficientnet_lite_pytorch")

pytestmark = pytest.mark.slow  # ~40 s: the cats/dogs run (shared) and two Lite0 networks


def _reference(kernel: np.ndarray, bias: np.ndarray):
    """The PyTorch Lite0 with transferkit's head; an Identity before its pooling is the layer
    whose output is the last feature map (Keras `top_activation`): the head's activation module
    is used twice in its forward, so a hook on it would fire twice."""
    from transferkit.backbones import efficientnet_lite as lite

    model = reference_impl.EfficientNet.from_name("efficientnet-lite0", image_size=224)
    model.load_state_dict(torch.load(lite._packaged_checkpoint(lite.VARIANTS["efficientnet_lite0"]),
                                     map_location="cpu", weights_only=True))
    model._fc = torch.nn.Linear(kernel.shape[0], kernel.shape[1])
    with torch.no_grad():
        model._fc.weight.copy_(torch.from_numpy(kernel.T.copy()))
        model._fc.bias.copy_(torch.from_numpy(bias))
    model._avg_pooling = torch.nn.Sequential(torch.nn.Identity(), model._avg_pooling)
    return model.eval()


def test_grad_cam_equals_captum_on_the_pytorch_reference(cats_dogs_run):
    import transferkit
    from helpers import shared_data
    from transferkit.data.images import load_resized
    from transferkit.explain.cams import class_activation_maps
    from transferkit.explain.gradients import output_gradients

    _, run = cats_dogs_run
    model = transferkit.load(run)
    dense = model.network.get_layer("classifier")
    kernel, bias = (np.asarray(w, dtype=np.float32) for w in dense.get_weights())
    reference = _reference(kernel, bias)
    folder = shared_data("cats_and_dogs", "validation")
    photos = [sorted((folder / kind).iterdir())[i] for kind in ("cats", "dogs") for i in (0, 7)]
    pixels = np.stack([load_resized(p, model.input_size, model.resize_policy)
                       for p in photos]).astype(np.float32)
    maps, head = model.get_encoder().feature_map_models(model.network)
    activations = np.asarray(maps.predict(pixels, verbose=0))
    results = model.explain(list(pixels.astype(np.uint8)))
    x = torch.from_numpy(((pixels - 127.0) / 128.0).transpose(0, 3, 1, 2).copy())
    for i, result in enumerate(results):
        sign = 1.0 if model.class_names.index(result["explained"]) == 1 else -1.0  # one logit
        weights = np.full((1, 1), sign, dtype=np.float32)
        logits, gradients = output_gradients(head, activations[i:i + 1], weights)
        ours = class_activation_maps(activations[i:i + 1], gradients)[0]
        cam = captum_attr.LayerGradCam(lambda inputs: reference(inputs) * sign,
                                       reference._avg_pooling[0])
        theirs = cam.attribute(x[i:i + 1], target=0, relu_attributions=True)
        with torch.no_grad():
            assert abs(float(reference(x[i:i + 1])[0, 0]) - float(logits[0, 0])) < 1e-3
        grid = theirs.detach().numpy()[0, 0]
        assert np.corrcoef(ours.ravel(), grid.ravel())[0, 1] >= 0.999
        np.testing.assert_allclose(ours, grid, atol=1e-4 * grid.max())
        upsampled = captum_attr.LayerAttribution.interpolate(
            theirs, (224, 224), interpolate_mode="bilinear").detach().numpy()[0, 0]
        assert np.corrcoef(result["map"].ravel(), upsampled.ravel())[0, 1] >= 0.9
