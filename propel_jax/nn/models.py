"""The paper's CNN and the regression model built from it and an output head.

Asad et al. (ICPR 2020) use a small CNN: blocks of [3×3 conv, BatchNorm, ReLU,
2×2 max-pool] with 16, 32, 32, 32 channels, flatten, a hidden dense layer
(50 units for hand orientation, 20 for head orientation), ReLU, and an output
layer. For a 128×128 input the four pools leave 8×8×32 = 2048 features.

Its parameter counts against the paper's figures are in docs/training.md
(tests/models_test.py recomputes them from the layer shapes).
"""

from typing import Any

from flax import nnx
import jax
import ml_collections

from propel_jax.nn import layers
from propel_jax.nn import registry


def default_model_config() -> ml_collections.ConfigDict:
  """The `config.model` keys `create_model` reads, with the paper's defaults."""
  return ml_collections.ConfigDict({
      # Backbone.
      'channels': (16, 32, 32, 32),  # One [conv, BN, ReLU, pool] block each.
      'hidden_units': 50,  # The paper: 50 for hand (n = 2), 20 for head (n = 3).
      'batch_norm_momentum': 0.9,  # Flax convention (PyTorch's 0.1).
      'conv_weight_gradient': 'auto',  # See layers.conv3x3: fast on CPU, XLA's elsewhere.
      # Mixture heads (propel, mdn; learn_weights and propel_target also vmfpropel).
      'scale_activation': 'softplus',  # Or 'sigmoid', the paper's choice.
      'min_scale': 1e-3,  # Floor on every σ, normalised units.
      'learn_weights': False,  # The paper uses w_i = 1/I.
      'covariance': 'diagonal',  # Or 'full': each component's Cholesky factor (heads.COVARIANCES).
      'propel_target': 'label',  # Or 'equivalents': a mixture over the label's symmetries.
      # Heatmap head.
      'heatmap_bins': 100,
      'heatmap_layout': 'auto',  # 'joint' grid for n <= 2, 'marginal' 1-D maps above.
      'heatmap_sigma': 0.05,  # Target bump width, normalised units (see HeatmapHead).
      # Von Mises-Fisher heads (vmfpropel, vmfmdn): κ = min + scale · softplus(raw).
      'min_concentration': 1.0,
      'concentration_scale': 100.0,
      'classifier_bins': 72,  # Angle classifier: bins over the full turn.
      'rotation_grid_level': 2,  # Rotation classifier: 72·8^level cells of SO(3) (4,608).
  })


class PaperCNN(nnx.Module):
  """Blocks of [3×3 conv (SAME), BatchNorm, ReLU, 2×2 max-pool], flatten, FC, ReLU.

  Each pool halves the spatial size (rounding down), so an H×W input gives
  (H // 2^k)·(W // 2^k)·channels[-1] features after k blocks. The conv is
  `layers.Conv3x3` (the parameters and values of `nnx.Conv(..., use_bias=False)`:
  BatchNorm cancels a conv bias), and [BatchNorm, ReLU, pool] is
  `layers.batch_norm_relu_max_pool` over an `nnx.BatchNorm` (the values of
  `nnx.max_pool(nnx.relu(norm(x)), (2, 2), (2, 2))`); both have gradients that
  are faster on CPU (see layers.py).
  """

  def __init__(self, image_shape: tuple[int, int, int], *,
               channels=(16, 32, 32, 32), hidden_units: int = 50,
               batch_norm_momentum: float = 0.9, conv_weight_gradient: str = 'auto',
               rngs: nnx.Rngs):
    """Args:
      image_shape: (H, W, C) of the input images.
      channels: output channels of each block.
      hidden_units: width of the hidden dense layer (the output features).
      batch_norm_momentum: running-statistics decay of every BatchNorm.
      conv_weight_gradient: how convolutions compute their kernel gradient
        (`layers.conv3x3`); the same values either way.
      rngs: parameter initialisation keys.
    """
    height, width, in_channels = (int(d) for d in image_shape)
    if height >> len(channels) < 1 or width >> len(channels) < 1:
      raise ValueError(f'image_shape {tuple(image_shape)} is too small for '
                       f'{len(channels)} 2×2 max-pools (needs H, W >= {2 ** len(channels)}).')
    self.image_shape = (height, width, in_channels)
    self.convs = nnx.List()
    self.norms = nnx.List()
    for out_channels in channels:
      self.convs.append(layers.Conv3x3(in_channels, out_channels,
                                       weight_gradient=conv_weight_gradient, rngs=rngs))
      self.norms.append(nnx.BatchNorm(out_channels, momentum=batch_norm_momentum,
                                      rngs=rngs))
      in_channels = out_channels
      height, width = height // 2, width // 2
    self.num_flat_features = height * width * in_channels
    self.dense = nnx.Linear(self.num_flat_features, hidden_units, rngs=rngs)
    self.num_features = hidden_units

  def __call__(self, images):
    """images [B, H, W, C] -> features [B, hidden_units]."""
    if images.shape[-3:] != self.image_shape:
      raise ValueError(f'images shape {images.shape} must be [B, H, W, C] with '
                       f'(H, W, C) = {self.image_shape}.')
    x = images
    for conv, norm in zip(self.convs, self.norms):
      x = layers.batch_norm_relu_max_pool(norm, conv(x))
    x = x.reshape(x.shape[:-3] + (-1,))
    return nnx.relu(self.dense(x))


class RegressionModel(nnx.Module):
  """A backbone and an output head: images [B, H, W, C] -> the head's outputs dict."""

  def __init__(self, backbone: PaperCNN, head: nnx.Module):
    self.backbone = backbone
    self.head = head

  def __call__(self, images):
    return self.head(self.backbone(images))


def _model_config(config) -> ml_collections.ConfigDict:
  """`config.model` over the defaults; unknown keys are errors."""
  merged = default_model_config()
  overrides = config.get('model', None) or {}
  unknown = sorted(set(overrides.keys()) - set(merged.keys()))
  if unknown:
    raise ValueError(f'Unknown config.model keys {unknown}; known: {sorted(merged.keys())}.')
  for key, value in overrides.items():
    merged[key] = value
  return merged


def create_model(config, info: Any, *, rngs: nnx.Rngs) -> RegressionModel:
  """Builds the model a config asks for: the paper's CNN and the head `config.head`.

  Args:
    config: reads `head` (a name in `registry.HEADS`), the keys that head
      reads (`num_components` for mixtures, its target width:
      `registry.Head.target_width`) and the optional `model` sub-config (keys
      and defaults in `default_model_config`).
    info: the dataset's DatasetInfo; reads `image_shape` (H, W, C) and
      `labels` (its `kind` and `names`: n = their number).
    rngs: parameter initialisation keys.

  Returns:
    A RegressionModel in training mode (call `.eval()` for inference).

  Raises:
    ValueError: naming the config key, for an unknown head, one that does
      not take the dataset's label kind, or a setting it does not support.
  """
  head = registry.get(config.head)  # Before any parameter is initialised.
  cfg = _model_config(config)
  backbone = PaperCNN(tuple(info.image_shape), channels=tuple(cfg.channels),
                      hidden_units=cfg.hidden_units,
                      batch_norm_momentum=cfg.batch_norm_momentum,
                      conv_weight_gradient=cfg.conv_weight_gradient, rngs=rngs)
  args = registry.BuildArgs(in_features=backbone.num_features, label_kind=info.labels.kind,
                            num_targets=len(info.labels.names), config=config, model=cfg,
                            rngs=rngs)
  return RegressionModel(backbone, registry.build(head.name, args))


def count_params(model: nnx.Module) -> int:
  """Number of trainable scalars (nnx.Param); BatchNorm running stats excluded."""
  return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
