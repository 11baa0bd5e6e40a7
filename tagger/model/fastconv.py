"""Exact, fewer-FLOP inference for :class:`tagger.model.musicnn.MusiCNN` (CPU, float32/bf16).

The network's weights are turned once into derived tensors (see :class:`FastMusiCNN`); the
forward pass then computes the same function with about half the multiply-adds of the plain
layer-by-layer one, every heavy step a large matrix product:

* Timbral filters (7 frames x 38 or 67 bands, valid in frequency): a correlation along
  frequency is a product in the DFT domain, and the sum over the 7 frames can be done there
  too. So: a real DFT of (windows of) every padded input frame, as one matrix product; per
  frequency bin one product of the 7 frames' spectra with all the filters' spectra (batched
  matrix products over the bins); then a real inverse DFT, as one matrix product, that
  computes only the *valid* output bands (59 and 30). The output bands are split in blocks
  (overlap-save) and the kernels in pieces (overlap-add, the pieces summed in the DFT domain
  like the frames), which shortens the DFTs (48 and 63 points instead of 96): ~2.6x fewer
  multiply-adds than the direct convolution. Exact up to float rounding (~1e-6).
* "relu, batch norm, max over frequency" becomes "max over frequency, then relu and batch
  norm" per channel: relu and a positive affine map are monotonic, so they commute with max
  exactly; for a channel whose batch-norm scale is negative the filter is negated up front
  (max of -y is -min of y), which is exact too. Only the (rows x channels) maxima are then
  touched elementwise, instead of every (rows x bands x channels) value.
* Temporal filters (128, 64, 32 frames x 1 band, "same"): block-Toeplitz matrix products,
  one per block of 8 output frames, straight on the padded input (no unfold copy); the
  shorter filters' windows are nested in the longest one, and the columns that only see
  zero padding are left out.
* Mid-end: convolutions over time as matrix products on time-major (channels last) data;
  the back-end batch norm folded into the dense layer.

Everything runs in chunks so that the intermediates stay in cache.

The same restructuring runs in bfloat16 (``dtype=torch.bfloat16``) where the CPU has native
bf16 matrix products (AVX-512 BF16, AMX): the derived weights are rounded to bf16 once, the
products accumulate in float32 inside oneDNN, and the pooled features and everything after
them (dense layers, output) stay float32, so only the front and mid-end round.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

N_DFT = 96  # mel bands


def _bn_affine(bn) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of an eval-mode batch norm, in float64."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - bn.running_mean.double() * scale


def _split(total: int, pieces: int) -> list[tuple[int, int]]:
    """(start, length) of `pieces` nearly equal consecutive parts of range(total)."""
    bounds = [round(i * total / pieces) for i in range(pieces + 1)]
    return [(lo, hi - lo) for lo, hi in zip(bounds, bounds[1:])]


def _timbral_groups(conv, sign, bands: int, blocks: int, parts: int) -> list[dict]:
    """DFT-domain form of one timbral bank, as `blocks` x (sum of `parts` kernel pieces).

    Output bands are split into `blocks` (overlap-save) and the kernel's bands into `parts`
    (overlap-add): each part sees its own window of the input, and the parts, like the 7
    frames, are summed in the DFT domain. A group (one output block) needs a DFT of length
    n = block + longest part - 1 instead of 96, trading fewer inverse-DFT multiply-adds
    for more (but better shaped) per-bin ones.
    """
    w = conv.weight.detach().double()[:, 0] * sign[:, None, None]  # (O, 7, Kf)
    out_ch, taps, kf = w.shape
    groups = []
    for n0, length in _split(bands - kf + 1, blocks):
        pieces = _split(kf, parts)
        n = length + max(k for _, k in pieces) - 1
        bins = n // 2 + 1
        f = torch.arange(bins, dtype=torch.float64)
        real_only = [0] + ([bins - 1] if n % 2 == 0 else [])
        # input transform: band i -> (piece, part, bin), the piece's window starting at n0 + k0
        transform = torch.zeros(bands, len(pieces), 2, bins, dtype=torch.float64)
        re_rows, im_rows = [], []
        for p, (k0, kp) in enumerate(pieces):
            m = torch.arange(n, dtype=torch.float64)
            angle = 2 * math.pi * m[:, None] * f[None, :] / n
            sin = torch.sin(angle)
            sin[:, real_only] = 0.0
            stop = min(n, bands - n0 - k0)  # beyond the last band: only zero weights see it
            transform[n0 + k0:n0 + k0 + stop, p, 0] = torch.cos(angle[:stop])
            transform[n0 + k0:n0 + k0 + stop, p, 1] = -sin[:stop]
            k = torch.arange(kp, dtype=torch.float64)
            angle = 2 * math.pi * f[:, None] * k[None, :] / n
            piece = w[:, :, k0:k0 + kp]
            wr = torch.einsum("otk,fk->fot", piece, torch.cos(angle))  # (bins, O, 7)
            wi = -torch.einsum("otk,fk->fot", piece, torch.sin(angle))
            wi[real_only] = 0.0
            # correlation: Z = X * conj(W): Zr = Xr Wr + Xi Wi, Zi = Xi Wr - Xr Wi
            re_rows.append(torch.cat((wr, wi), dim=2))
            im_rows.append(torch.cat((-wi, wr), dim=2))
        # per-bin weights: rows (part, filter), columns (piece, part, frame)
        per_bin = torch.stack((torch.cat(re_rows, dim=2), torch.cat(im_rows, dim=2)), dim=1)
        j = torch.arange(length, dtype=torch.float64)
        angle = 2 * math.pi * j[:, None] * f[None, :] / n
        mult = torch.full((bins,), 2.0 / n, dtype=torch.float64)
        mult[real_only] = 1.0 / n
        inverse = torch.stack((torch.cos(angle) * mult, -torch.sin(angle) * mult), dim=2)
        inverse[:, real_only, 1] = 0.0
        groups.append(dict(
            transform=transform.reshape(bands, -1).float().contiguous(),
            per_bin=per_bin.reshape(bins, 2 * out_ch, -1).float().contiguous(),
            inverse=inverse.reshape(length, 2 * bins).float().contiguous(),
            bins=bins, pieces=len(pieces), out_ch=out_ch))
    return groups


def bf16_bit_extremes(values: torch.Tensor, dim: int, high: torch.Tensor,
                      low: torch.Tensor) -> None:
    """int16 maximum and minimum over ``dim`` of the bit patterns of bf16 ``values``.

    Half of an exact bf16 maximum that runs at int16 speed: torch's bf16 ``amax`` widens
    every value to float32 and back, ~5x slower than an int16 ``amax`` over the same bits,
    and the temporal banks' maxima over the 96 bands took 40 % of their time. As int16 the
    bit patterns of values >= +0 order as the values do and lie above all those of values
    <= -0, whose order is reversed. So if the int16 maximum of a set is >= 0 it is the
    set's maximum; if not, every value is <= -0 and the maximum, the one of least magnitude,
    is the int16 minimum. :func:`bf16_maxima` picks; the result is bit for bit ``amax``'s.
    """
    bits = values.view(torch.int16)
    torch.amax(bits, dim=dim, out=high)
    torch.amin(bits, dim=dim, out=low)


def bf16_maxima(high: torch.Tensor, low: torch.Tensor) -> None:
    """The maxima from :func:`bf16_bit_extremes`' parts, into ``high``."""
    torch.where(high < 0, low, high, out=high)


class FastMusiCNN:
    """Derived weights of one :class:`MusiCNN` and its fast inference pass."""

    def __init__(self, net, timbral_chunk_rows: int = 64, temporal_chunk_patches: int = 8,
                 timbral_split: tuple = ((2, 2), (1, 2)),
                 temporal_block: int = 8, dtype: torch.dtype = torch.float32):
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"dtype must be float32 or bfloat16, got {dtype}")
        self.dtype = dtype
        self.timbral_chunk_rows = timbral_chunk_rows
        self.temporal_chunk_patches = temporal_chunk_patches
        with torch.no_grad():
            scale, shift = _bn_affine(net.input_bn)
            self.in_scale, self.in_shift = float(scale[0]), float(shift[0])
            signs, biases, scales, shifts = [], [], [], []
            for conv, bn in zip(net.timbral, net.timbral_bn):
                s, t = _bn_affine(bn)
                signs.append(torch.where(s < 0, -1.0, 1.0).double())
                biases.append(conv.bias.double())
                scales.append(s)
                shifts.append(t)
            self.timbral_groups = [
                _timbral_groups(conv, sign, N_DFT, blocks, parts)
                for conv, sign, (blocks, parts) in zip(net.timbral, signs, timbral_split)]
            self.timbral_channels = [conv.out_channels for conv in net.timbral]
            self.temporal_lengths = tuple(net.temporal_lengths)
            self.longest = max(self.temporal_lengths)
            # block-Toeplitz form: each GEMM row gives `blk` consecutive outputs of one band
            blk = self.temporal_block = temporal_block
            self.temporal_width = width = -(-(self.longest - 1 + blk) // blk) * blk
            self.temporal = []
            for length, conv, bn in zip(self.temporal_lengths, net.temporal, net.temporal_bn):
                s, t = _bn_affine(bn)
                sign = torch.where(s < 0, -1.0, 1.0).double()
                w = conv.weight.detach().double()[:, 0, :, 0] * sign[:, None]  # (O, L)
                # window start inside the longest window (TF "same": extra padding after)
                offset = (self.longest - 1) // 2 - (length - 1) // 2
                toeplitz = torch.zeros(width, blk, w.shape[0], dtype=torch.float64)
                for i in range(blk):
                    toeplitz[offset + i:offset + i + length, i] = w.t()
                # rows [offset, offset + length + blk - 1) are the nonzero ones
                self.temporal.append((offset, offset + length + blk - 1,
                                      toeplitz.reshape(width, -1).float().contiguous()))
                signs.append(sign)
                biases.append(conv.bias.double())
                scales.append(s)
                shifts.append(t)
            self.front_sign = torch.cat(signs).float()
            self.front_bias = torch.cat(biases).float()
            self.front_scale = torch.cat(scales).float()
            self.front_shift = torch.cat(shifts).float()
            self.front_channels = len(self.front_sign)

            self.midend = []
            for conv, bn in zip(net.midend, net.midend_bn):
                s, t = _bn_affine(bn)
                w = conv.weight.detach()  # (O, C, K)
                kernel = w.shape[2]
                # (C, K*O): all taps in one matrix product, summed shifted afterwards
                self.midend.append((kernel, w.permute(1, 2, 0).reshape(w.shape[1], -1)
                                    .contiguous(), conv.bias.detach().clone(),
                                    s.float(), t.float()))
            s, t = _bn_affine(net.backend_bn)
            dense_w = net.dense.weight.detach().double()
            self.dense_w = (dense_w * s[None, :]).t().float().contiguous()
            self.dense_b = (net.dense.bias.double() + dense_w @ t).float()
            s, t = _bn_affine(net.dense_bn)
            self.dense_scale, self.dense_shift = s.float(), t.float()
            self.out_w = net.output.weight.detach().t().contiguous()
            self.out_b = net.output.bias.detach().clone()
            if dtype != torch.float32:  # the front and mid-end weights only (see the docstring)
                for groups in self.timbral_groups:
                    for g in groups:
                        for key in ("transform", "per_bin", "inverse"):
                            g[key] = g[key].to(dtype)
                self.temporal = [(lo, hi, w.to(dtype)) for lo, hi, w in self.temporal]
                for name in ("front_sign", "front_bias", "front_scale", "front_shift"):
                    setattr(self, name, getattr(self, name).to(dtype))
                # the mid-end's products in bf16, their shifted sums in float32 (strided bf16
                # adds are slower than float32 ones on the CPU)
                self.midend = [(kernel, w.to(dtype), b, s, t)
                               for kernel, w, b, s, t in self.midend]

    # -- front end ---------------------------------------------------------------------------
    def _timbral(self, x: torch.Tensor, front: torch.Tensor) -> None:
        """Raw (sign-adjusted) maxima over frequency of both timbral banks into front[:, :408]."""
        batch, frames, bands = x.shape
        rows = batch * frames
        padded = F.pad(x, (0, 0, 3, 3)).reshape(-1, bands)  # (B * (T+6), 96)
        chunk = min(self.timbral_chunk_rows, rows)
        col = 0
        for groups, out_ch in zip(self.timbral_groups, self.timbral_channels):
            peak = front[:, col:col + out_ch]  # the bank's maxima, written in place
            for index, g in enumerate(groups):
                bins = g["bins"]
                spectra = (padded @ g["transform"]).view(batch, frames + 6, -1, bins)
                # a[bin, (piece, part, frame), row]: the 7 frames' spectra at one bin
                a = spectra.unfold(1, 7, 1).permute(3, 2, 4, 0, 1).reshape(bins, -1, rows)
                # the products write into buffers made once per group (a short last chunk
                # uses their contiguous prefixes): allocating each chunk's result afresh made
                # the inverse-DFT product ~15 % slower
                block = g["inverse"].shape[0]
                z_store = torch.empty(bins * 2 * out_ch * chunk, dtype=x.dtype)
                y_store = torch.empty(block * out_ch * chunk, dtype=x.dtype)
                peak_store = torch.empty(out_ch * chunk, dtype=x.dtype)
                for start in range(0, rows, chunk):
                    stop = min(start + chunk, rows)
                    c = stop - start
                    z = z_store[:bins * 2 * out_ch * c].view(bins, 2 * out_ch, c)
                    y = y_store[:block * out_ch * c].view(block, out_ch * c)
                    block_peak = peak_store[:out_ch * c].view(out_ch, c)
                    torch.bmm(g["per_bin"], a[:, :, start:stop], out=z)
                    torch.mm(g["inverse"], z.view(2 * bins, -1), out=y)
                    torch.amax(y, dim=0, out=block_peak.view(-1))
                    if index == 0:
                        peak[start:stop] = block_peak.t()
                    else:
                        torch.maximum(peak[start:stop], block_peak.t(), out=peak[start:stop])
            col += out_ch

    def _temporal(self, x: torch.Tensor, front: torch.Tensor, col: int) -> None:
        """Raw (sign-adjusted) maxima over frequency of the temporal banks into front[:, col:].

        Block-Toeplitz matrix products: a row is one band of one patch, its columns the input
        frames that one block of `blk` consecutive outputs can see; one product per block
        position, so the columns that fall into the zero padding are simply left out.
        """
        batch, frames, bands = x.shape
        blk, width = self.temporal_block, self.temporal_width
        n_blocks = -(-frames // blk)
        before = (self.longest - 1) // 2
        total = (n_blocks - 1) * blk + width
        xt = F.pad(x.transpose(1, 2), (before, total - frames - before))  # (B, 96, total)
        out = front.view(batch, frames, -1)
        n_banks = len(self.temporal)
        out_ch = self.temporal[0][2].shape[1] // blk
        step = self.temporal_chunk_patches
        bits = x.dtype == torch.bfloat16  # maxima by bit pattern (see bf16_bit_extremes)
        products = torch.empty(min(step, batch) * bands, blk * out_ch, dtype=x.dtype)
        for start in range(0, batch, step):
            stop = min(start + step, batch)
            n = stop - start
            rows = xt[start:stop].reshape(n * bands, total)
            y = products[:n * bands]
            peak = torch.empty(n_blocks, n_banks, n, blk, out_ch, dtype=x.dtype)
            if bits:
                low = torch.empty(peak.shape, dtype=torch.int16)
            for block in range(n_blocks):
                first = block * blk
                # the window's columns that hold real frames (the rest is zero padding)
                lo_data, hi_data = max(0, before - first), min(width, before + frames - first)
                for j, (lo, hi, w) in enumerate(self.temporal):
                    lo_, hi_ = max(lo, lo_data), min(hi, hi_data)
                    # y: (n * 96, blk * O)
                    torch.mm(rows[:, first + lo_:first + hi_], w[lo_:hi_], out=y)
                    bands_first = y.view(n, bands, blk, out_ch)
                    if bits:
                        bf16_bit_extremes(bands_first, 1, peak[block, j].view(torch.int16),
                                          low[block, j])
                    else:
                        torch.amax(bands_first, dim=1, out=peak[block, j])
            if bits:
                bf16_maxima(peak.view(torch.int16), low)
            peak = peak.permute(2, 0, 3, 1, 4).reshape(n, n_blocks * blk, n_banks * out_ch)
            out[start:stop, :, col:col + n_banks * out_ch] = peak[:, :frames]

    def embed(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, frames, _ = patches.shape
        x = (patches.float() * self.in_scale + self.in_shift).to(self.dtype)
        front = torch.empty(batch * frames, self.front_channels, dtype=self.dtype)
        self._timbral(x, front)
        n_timbral = sum(self.timbral_channels)
        self._temporal(x, front, n_timbral)
        # undo the sign trick, then bias, relu, batch norm per channel
        front.mul_(self.front_sign).add_(self.front_bias).relu_()
        front.mul_(self.front_scale).add_(self.front_shift)
        features = [front.view(batch, frames, -1).float()]
        for i, (kernel, w, b, s, t) in enumerate(self.midend):
            inp = features[-1]
            pad = (kernel - 1) // 2
            padded = F.pad(inp.to(w.dtype), (0, 0, pad, kernel - 1 - pad))  # (B, T+6, C)
            taps = (padded.reshape(-1, padded.shape[2]) @ w).float().view(
                batch, frames + kernel - 1, kernel, -1)
            out = taps[:, 0:frames, 0] + b
            for k in range(1, kernel):
                out += taps[:, k:k + frames, k]
            out = out.relu_().mul_(s).add_(t)
            features.append(out if i == 0 else out.add_(inp))
        stacked = torch.cat(features, dim=2)  # (B, T, 753)
        # the mean over time in float32 whatever the dtype (a bf16 sum of 187 values drifts)
        pooled = torch.stack((stacked.amax(dim=1).float(),
                              stacked.mean(dim=1, dtype=torch.float32)), dim=2).flatten(1)
        penultimate = torch.addmm(self.dense_b, pooled, self.dense_w).relu_()
        penultimate = penultimate.mul_(self.dense_scale).add_(self.dense_shift)
        return pooled, penultimate

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.out_b, self.embed(patches)[1], self.out_w)
