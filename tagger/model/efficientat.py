"""EfficientAT mn04_as (Schmid et al., ICASSP 2023) in PyTorch: an AudioSet tagger and its own
mel front-end, and loading the shipped weights.

A MobileNetV3 for audio (one input channel: a log-mel spectrogram, frequency x time) at width
0.4, trained on AudioSet: 527 independent scores (Speech, Music, animals, environmental sounds,
instruments, ~50 music genres). Written from the paper and the released state dict's layout;
tools/convert_efficientat.py renames the release's keys to this module's, and
tests/test_efficientat.py checks the logits against the original implementation's.

Input: mono float32 waveforms at 32 kHz, shape (batch, samples); any length over 513 samples
works (the STFT reflects 512 at each end; the network pools globally); it was trained on
10 s clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tagger.model.backbone import WAVEFORM, BackboneInput, load_frozen, verified_weights
from tagger.model.backbone import read_card as read_shipped_card

SAMPLE_RATE = 32000
N_FFT = 1024
WIN_LENGTH = 800
HOP_LENGTH = 320
N_MELS = 128
F_MIN = 0.0
F_MAX = 15000.0
PREEMPHASIS = 0.97
LOG_OFFSET = 1e-5
BN_EPS = 1e-3

CARD_FILE = "efficientat.json"
SHIPPED_MODEL = "EfficientAT_mn04_as"


def frames_for(samples: int) -> int:
    """Spectrogram frames for a waveform of ``samples`` (pre-emphasis drops one sample)."""
    return (samples - 1) // HOP_LENGTH + 1


def kaldi_mel_banks(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE,
                    f_min: float = F_MIN, f_max: float = F_MAX) -> torch.Tensor:
    """Triangular mel filters the Kaldi way, shape (n_mels, n_fft // 2 + 1), float32.

    mel(f) = 1127 ln(1 + f / 700); the filters' edges are evenly spaced in mel between
    ``f_min`` and ``f_max``, each weight is the triangle's height at the bin's mel value
    (not its frequency), over the n_fft / 2 bins below Nyquist; the Nyquist bin gets none.
    Computed in float64.
    """
    def mel(f):
        return 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)

    low, high = mel(f_min), mel(f_max)
    step = (high - low) / (n_mels + 1)
    edges = low + step * torch.arange(n_mels + 2, dtype=torch.float64)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bins = mel(torch.arange(n_fft // 2, dtype=torch.float64) * sample_rate / n_fft)[None, :]
    rising = (bins - left) / (centre - left)
    falling = (right - bins) / (right - centre)
    banks = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return F.pad(banks, (0, 1)).float()


class MelFrontEnd(nn.Module):
    """Waveform (batch, samples) at 32 kHz -> normalised log-mel (batch, 128, frames).

    Pre-emphasis x[n+1] - 0.97 x[n]; centred STFT (reflect padding), n_fft 1024, a symmetric
    800-sample Hann window, hop 320; power; Kaldi mel banks 0-15 kHz; (ln(mel + 1e-5) + 4.5) / 5.
    No parameters: its buffers are rebuilt from these constants, not saved with the weights.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(WIN_LENGTH, periodic=False,
                                                         dtype=torch.float32), persistent=False)
        banks = kaldi_mel_banks()
        # the bins above the last filter (15 kHz) have no weight: their power is not needed
        self.bins = int(banks.nonzero()[:, 1].max()) + 1
        self.register_buffer("mel_banks", banks[:, :self.bins].contiguous(), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        with torch.autocast(waveform.device.type, enabled=False):  # float32 under any autocast
            return self._log_mel(waveform.float())

    def _log_mel(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, 1:] - PREEMPHASIS * x[:, :-1]
        spectrum = torch.stft(x, N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH,
                              window=self.window, center=True, pad_mode="reflect",
                              return_complex=True)
        parts = torch.view_as_real(spectrum[:, :self.bins])
        power = parts[..., 0].square() + parts[..., 1].square()  # (batch, bins, frames)
        mel = torch.matmul(self.mel_banks, power)
        return (torch.log(mel + LOG_OFFSET) + 4.5) / 5.0


# -- the network ---------------------------------------------------------------------------------

def scaled_channels(channels: float, width: float, divisor: int = 8) -> int:
    """``channels * width`` rounded to a multiple of ``divisor`` (never down by over 10 %):
    MobileNet's channel rule."""
    value = channels * width
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block at width 1 (MobileNetV3-Large, Howard et al. 2019, table 1)."""

    inputs: int
    kernel: int
    expanded: int
    outputs: int
    excite: bool  # squeeze-and-excitation over the channels
    hardswish: bool  # else ReLU
    stride: int


LARGE_BLOCKS = (
    BlockSpec(16, 3, 16, 16, False, False, 1),
    BlockSpec(16, 3, 64, 24, False, False, 2),
    BlockSpec(24, 3, 72, 24, False, False, 1),
    BlockSpec(24, 5, 72, 40, True, False, 2),
    BlockSpec(40, 5, 120, 40, True, False, 1),
    BlockSpec(40, 5, 120, 40, True, False, 1),
    BlockSpec(40, 3, 240, 80, False, True, 2),
    BlockSpec(80, 3, 200, 80, False, True, 1),
    BlockSpec(80, 3, 184, 80, False, True, 1),
    BlockSpec(80, 3, 184, 80, False, True, 1),
    BlockSpec(80, 3, 480, 112, True, True, 1),
    BlockSpec(112, 3, 672, 112, True, True, 1),
    BlockSpec(112, 5, 672, 160, True, True, 2),
    BlockSpec(160, 5, 960, 160, True, True, 1),
    BlockSpec(160, 5, 960, 160, True, True, 1),
)
LARGE_HIDDEN = 1280


class ConvNorm(nn.Module):
    """Convolution (no bias), batch norm, then an activation (or none)."""

    def __init__(self, inputs: int, outputs: int, kernel: int = 1, stride: int = 1,
                 groups: int = 1, activation: type[nn.Module] | None = None):
        super().__init__()
        self.conv = nn.Conv2d(inputs, outputs, kernel, stride, (kernel - 1) // 2,
                              groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(outputs, eps=BN_EPS)
        self.act = activation() if activation is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Channel attention: mean over frequency and time, a ReLU bottleneck (a quarter of the
    channels, rounded up to a multiple of 8), a sigmoid gate per channel."""

    def __init__(self, channels: int):
        super().__init__()
        squeezed = scaled_channels(channels // 4, 1.0)
        self.reduce = nn.Linear(channels, squeezed)
        self.expand = nn.Linear(squeezed, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(F.relu(self.reduce(x.mean(dim=(2, 3)))))
        return x * torch.sigmoid(gate)[:, :, None, None]


class InvertedResidual(nn.Module):
    """1x1 expansion (when it widens), depthwise k x k, optional squeeze-excitation, linear 1x1
    projection; the input is added back where the shape allows."""

    def __init__(self, inputs: int, kernel: int, expanded: int, outputs: int, excite: bool,
                 hardswish: bool, stride: int):
        super().__init__()
        activation = nn.Hardswish if hardswish else nn.ReLU
        self.expand = (ConvNorm(inputs, expanded, activation=activation)
                       if expanded != inputs else None)
        self.depthwise = ConvNorm(expanded, expanded, kernel, stride, groups=expanded,
                                  activation=activation)
        self.excite = SqueezeExcite(expanded) if excite else None
        self.project = ConvNorm(expanded, outputs)
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.depthwise(y)
        if self.excite is not None:
            y = self.excite(y)
        y = self.project(y)
        return y + x if self.residual else y


class EfficientAT(nn.Module):
    """The mn (MobileNetV3) audio tagger with the "mlp" head, and its mel front-end.

    ``forward(waveform)`` -> logits (batch, n_classes); ``embed`` also gives the pooled
    features (384 at width 0.4, the global mean of the last feature maps) and the hidden
    layer (512) before the output layer.
    """

    def __init__(self, n_classes: int = 527, width: float = 0.4):
        super().__init__()
        self.frontend = MelFrontEnd()
        stem = scaled_channels(LARGE_BLOCKS[0].inputs, width)
        self.stem = ConvNorm(1, stem, 3, 2, activation=nn.Hardswish)
        self.blocks = nn.ModuleList(
            InvertedResidual(scaled_channels(b.inputs, width), b.kernel,
                             scaled_channels(b.expanded, width),
                             scaled_channels(b.outputs, width), b.excite, b.hardswish, b.stride)
            for b in LARGE_BLOCKS)
        last = scaled_channels(LARGE_BLOCKS[-1].outputs, width)
        self.head = ConvNorm(last, 6 * last, activation=nn.Hardswish)
        self.hidden = nn.Linear(6 * last, scaled_channels(LARGE_HIDDEN, width))
        self.output = nn.Linear(self.hidden.out_features, n_classes)

    @property
    def embedding_sizes(self) -> tuple[int, int]:
        """(pooled, hidden) widths."""
        return self.hidden.in_features, self.hidden.out_features

    # -- inference fast path -----------------------------------------------------------------
    # In eval mode without autograd on the CPU, the feature maps come from FoldedEfficientAT:
    # the same function with every batch norm folded into its convolution (a third fewer
    # passes over the feature maps), rebuilt whenever a parameter or buffer changes, as
    # MusiCNN's fast path is. ``inference_dtype`` is its arithmetic: float32, or bfloat16
    # (see FoldedEfficientAT for what rounds); the reference path is always float32.
    inference_dtype: torch.dtype = torch.float32

    def _weights_key(self) -> tuple:
        return (self.inference_dtype,) + tuple(
            (t.data_ptr(), t._version) for t in self.state_dict(keep_vars=True).values())

    def prepare_inference(self) -> FoldedEfficientAT:
        """Build (or reuse) the folded weights of the fast inference path; returns it."""
        key = self._weights_key()
        cached = self.__dict__.get("_folded")
        if cached is None or cached[0] != key:
            cached = (key, FoldedEfficientAT(self, dtype=self.inference_dtype))
            self.__dict__["_folded"] = cached  # not a submodule: no state_dict entries
        return cached[1]

    def _use_fast(self, mel: torch.Tensor) -> bool:
        return (not self.training and not torch.is_grad_enabled() and mel.device.type == "cpu"
                and mel.dtype == torch.float32)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        """The last feature maps (batch, 384, bands, frames) of log-mels (batch, 128, frames)."""
        if self._use_fast(mel):
            return self.prepare_inference().features(mel)
        return self.features_reference(mel)

    def features_reference(self, mel: torch.Tensor) -> torch.Tensor:
        """:meth:`features` layer by layer (differentiable; the fast path's reference)."""
        x = self.stem(mel.unsqueeze(1))
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def _head(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = maps.float().mean(dim=(2, 3))
        return pooled, F.hardswish(self.hidden(pooled))

    def embed_mel(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled features, hidden layer) of a batch of log-mels."""
        return self._head(self.features(mel))

    def embed(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled features, hidden layer) of a batch of 32 kHz waveforms."""
        return self.embed_mel(self.frontend(waveform))

    def embed_reference(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`embed` through the layer-by-layer modules, whatever the mode."""
        return self._head(self.features_reference(self.frontend(waveform)))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Logits, shape (batch, n_classes); apply a sigmoid for the class scores."""
        return self.output(self.embed(waveform)[1])


def _folded(layer: ConvNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """A convolution with its batch norm folded in: (weight, bias), computed in float64."""
    norm = layer.norm
    scale = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)
    weight = layer.conv.weight.double() * scale[:, None, None, None]
    bias = norm.bias.double() - norm.running_mean.double() * scale
    return weight.float().contiguous(), bias.float().contiguous()


class FoldedEfficientAT:
    """The feature maps of one :class:`EfficientAT`, batch norms folded into the convolutions.

    The maps are kept channels-last (bands x frames x channels in memory) from the stem on:
    the depthwise convolutions then vectorise over the channels, and a 1x1 convolution is one
    matrix product of (positions x channels) by (channels x outputs), with no copy. With the
    folding this takes about 30 % off the network's time against the layer-by-layer modules
    (bench/RESULTS.md, section "efficientat").

    With ``dtype=torch.bfloat16`` the 1x1 convolutions (four fifths of the multiply-adds) take
    bf16 inputs and weights, for CPUs with native bf16 products; their bias, the activations,
    the residual sums, the stem, the depthwise convolutions and the squeeze-excitation stay
    float32. Rounding more than that (every layer under autocast) moved the scores by up to
    0.06 on real clips and flipped a top class that won by 0.01; this way the largest move
    measured was 0.03 and no decision changed (tests/test_efficientat.py).
    """

    def __init__(self, net: EfficientAT, dtype: torch.dtype = torch.float32):
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"dtype must be float32 or bfloat16, got {dtype}")
        self.dtype = dtype
        with torch.no_grad():
            self.stem = self._layer(net.stem)
            self.blocks = [
                (self._layer(b.expand) if b.expand is not None else None,
                 self._layer(b.depthwise), b.excite, self._layer(b.project), b.residual)
                for b in net.blocks]
            self.head = self._layer(net.head)

    def _layer(self, layer: ConvNorm) -> tuple:
        weight, bias = _folded(layer)
        conv = layer.conv
        activation = {nn.ReLU: F.relu, nn.Hardswish: F.hardswish}.get(type(layer.act))
        if conv.kernel_size == (1, 1) and conv.groups == 1:  # as (inputs, outputs) for mm
            return weight.flatten(1).t().contiguous().to(self.dtype), bias, None, activation
        return weight, bias, (conv.stride, conv.padding, conv.groups), activation

    @staticmethod
    def _run(x: torch.Tensor, layer: tuple) -> torch.Tensor:
        weight, bias, conv, activation = layer
        if conv is not None:
            y = F.conv2d(x, weight, bias, conv[0], conv[1], 1, conv[2])
        else:
            batch, channels, bands, frames = x.shape
            rows = x.permute(0, 2, 3, 1).reshape(-1, channels)  # a view when channels-last
            if weight.dtype == x.dtype:
                y = torch.addmm(bias, rows, weight)
            else:  # bf16 products, the output back in float32 before the bias
                y = torch.mm(rows.to(weight.dtype), weight).float().add_(bias)
            y = y.view(batch, bands, frames, -1).permute(0, 3, 1, 2)
        return activation(y, inplace=True) if activation is not None else y

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        x = self._run(mel.unsqueeze(1), self.stem).contiguous(memory_format=torch.channels_last)
        for expand, depthwise, excite, project, residual in self.blocks:
            y = self._run(x, expand) if expand is not None else x
            y = self._run(y, depthwise)
            if excite is not None:
                y = excite(y)
            y = self._run(y, project)
            x = y.add_(x) if residual else y
        return self._run(x, self.head)


# -- the shipped weights -------------------------------------------------------------------------

#: what EfficientAT reads: 32 kHz waveforms (its front end is in the module), 10 s as trained
EFFICIENTAT_INPUT = BackboneInput(WAVEFORM, SAMPLE_RATE, 10.0)


@dataclass(frozen=True)
class LoadedEfficientAT:
    """The shipped checkpoint, loaded and checked: the network, its labels and identity; a
    :class:`tagger.model.backbone.Backbone`."""

    name: str  # "EfficientAT_mn04_as"
    prefix: str  # key prefix for its outputs: "audioset"
    labels: tuple[str, ...]  # AudioSet display names, in output order
    sha256: str
    network: EfficientAT

    @property
    def input(self) -> BackboneInput:
        return EFFICIENTAT_INPUT

    @property
    def embedding_sizes(self) -> tuple[int, int]:
        return self.network.embedding_sizes

    def place(self, device: torch.device, dtype: torch.dtype) -> None:
        if device.type == "cpu":
            self.network.inference_dtype = dtype  # the fast path's arithmetic
        else:
            self.network.to(device)  # bf16 there runs under the caller's autocast

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.network(inputs)

    def embed(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network.embed(inputs)

    def logits_from_penultimate(self, penultimate: torch.Tensor) -> torch.Tensor:
        return self.network.output(penultimate)

    def index(self, label: str) -> int:
        """The output column of an AudioSet class by display name (e.g. "Music")."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise KeyError(f"{label!r} is not an AudioSet class of {self.name}") from None


def read_card(directory: Path | None = None) -> dict:
    """The EfficientAT model card (labels, input spec, source, sha256)."""
    return read_shipped_card(CARD_FILE, directory)


def load_efficientat(name: str = SHIPPED_MODEL,
                     directory: Path | None = None) -> LoadedEfficientAT:
    """Load the shipped checkpoint, checking its sha256 against the model card."""
    entry, path, sha256 = verified_weights(CARD_FILE, name, directory)
    network = EfficientAT(n_classes=len(entry["labels"]), width=entry["width"])
    load_frozen(network, path)
    return LoadedEfficientAT(name=name, prefix=entry["prefix"], labels=tuple(entry["labels"]),
                             sha256=sha256, network=network)

