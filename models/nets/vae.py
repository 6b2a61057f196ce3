"""The variational autoencoder (Kingma & Welling 2014), MLP or conv, optionally class-conditional (Sohn et al. 2015).

Encoder q(z|x, y) = N(mu, diag(exp(logvar))); prior p(z) = N(0, I), or a VampPrior (Tomczak & Welling 2018: the
equally weighted mixture of the posteriors of K learned pseudo-inputs); decoder p(x|z, y) Bernoulli (images in
[0, 1]) or Gaussian with a learned per-dimension variance (points). Conditioning: the label embedding is concatenated
to z in the decoder and to the input in the encoder (as extra constant channels for conv nets).

The served model takes standard normal noise, whatever the prior: `prior_sample` maps it onto the VampPrior. A
conditional VampPrior has K pseudo-inputs per class, encoded with their class's label: p(z|y) is the mixture of
the class's K posteriors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models import densities
from models.nets.layers import ConvDown, GenerativeModel, ModelSpec, mlp, required_labels, up_body

LOGVAR_MIN, LOGVAR_MAX = -12.0, 8.0  # clamp of log-variances, keeps exp() finite early in training
IW_CHUNK_DECODES = 2048  # latents decoded per forward pass when evaluating the IWAE bound


class VAE(GenerativeModel):
    prior_mu: Tensor | None
    prior_logvar: Tensor | None

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        if spec.decoder not in ("bernoulli", "gaussian"):
            raise ValueError(f"a VAE needs decoder 'bernoulli' or 'gaussian', not {spec.decoder!r}")
        cond = spec.cond_dim
        if spec.architecture == "conv":
            self.encoder: nn.Module = ConvDown(spec.channels + cond, spec)  # (n, C + cond, H, W) -> (n, F)
            enc_out = self.encoder.out_features
        else:
            self.encoder = mlp(
                spec.features + cond, spec.width, spec.mlp_depth, nn.LeakyReLU, spec.activation
            )  # (n, width)
            enc_out = spec.width
        self.to_posterior = nn.Linear(enc_out, 2 * spec.latent_dim)  # (n, 2L): mu, logvar
        self.decoder = up_body(spec.latent_dim + cond, spec)  # (n, L + cond) -> (n, *net_shape)
        if spec.decoder == "gaussian":
            self.dec_logvar = nn.Parameter(torch.zeros(spec.net_shape))  # learned per-dimension log-variance
        k = spec.vamp_components
        total = k * max(1, spec.num_classes)  # conditional: K pseudo-inputs per class, class by class
        # VampPrior: the pseudo-inputs in net space (set from training data by `set_pseudo_inputs`), and their
        # posteriors, which sampling needs without running the encoder on all of them per pass: refreshed whenever
        # the model is switched to eval mode (`train`), saved with the weights.
        self.pseudo_inputs = nn.Parameter(torch.zeros(total, *spec.net_shape)) if k else None
        self.register_buffer("prior_mu", torch.zeros(total, spec.latent_dim) if k else None)
        self.register_buffer("prior_logvar", torch.zeros(total, spec.latent_dim) if k else None)

    # --- the prior ---------------------------------------------------------------------------------------------
    def set_pseudo_inputs(self, x: Tensor) -> None:
        """Start the VampPrior's pseudo-inputs at these inputs (net space; a conditional model's K per class, class
        by class): training inputs, so that the prior begins near the posteriors it has to match."""
        assert self.pseudo_inputs is not None
        with torch.no_grad():
            self.pseudo_inputs.copy_(x)

    def pseudo_labels(self) -> Tensor | None:
        """The class of each pseudo-input of a conditional model, None for an unconditional one."""
        if self.pseudo_inputs is None or not self.spec.num_classes:
            return None
        return torch.arange(len(self.pseudo_inputs), device=self.pseudo_inputs.device) // self.spec.vamp_components

    def prior_components(self) -> tuple[Tensor, Tensor]:
        """The VampPrior's components, means and log-variances (K or K x classes, L): the pseudo-inputs'
        posteriors."""
        assert self.pseudo_inputs is not None
        return self.encode_net(self.pseudo_inputs, self.pseudo_labels())

    def train(self, mode: bool = True) -> VAE:
        """Switching to eval mode also refreshes the VampPrior's stored components from the pseudo-inputs."""
        super().train(mode)
        if not mode and self.prior_mu is not None and self.prior_logvar is not None:
            with torch.no_grad():
                mu, logvar = self.prior_components()
                self.prior_mu.copy_(mu)
                self.prior_logvar.copy_(logvar)
        return self

    def log_prior(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """log p(z), or log p(z|y) for a conditional VampPrior (the mixture of its class's components), in nats:
        z (..., n, L), labels (n,) -> (..., n). In training mode the VampPrior's components are computed afresh, so
        that its pseudo-inputs learn; in eval mode the stored ones serve."""
        if self.pseudo_inputs is None:
            return densities.standard_normal_log_density(z)
        if self.training:
            mu, logvar = self.prior_components()
        else:
            assert self.prior_mu is not None and self.prior_logvar is not None
            mu, logvar = self.prior_mu, self.prior_logvar
        k = self.spec.vamp_components
        each = densities.diag_gaussian_log_density_each(z.reshape(-1, z.shape[-1]), mu, logvar)  # (N, K or C K)
        if self.spec.num_classes:  # each row's own class's K components
            rows = required_labels(labels).expand(z.shape[:-1]).reshape(-1)  # (N,)
            each = each.view(len(rows), -1, k)[torch.arange(len(rows), device=rows.device), rows]  # (N, K)
        return (torch.logsumexp(each, dim=1) - math.log(k)).reshape(z.shape[:-1])

    def prior_sample(self, noise: Tensor, labels: Tensor | None) -> Tensor:
        """Standard normal noise (n, L) -> latents drawn from the prior (n, L), given the labels of a conditional
        VampPrior; each row alone.

        N(0, I) is its own prior. For the VampPrior the first two coordinates are split as Box and Muller would
        join them: u = exp(-r^2 / 2), r the pair's length, is uniform and independent of the pair's direction;
        floor(u K) picks the component (of the row's class) and the rest of u K, uniform again, gives a new length
        r' = sqrt(-2 log rest) along the same direction, a fresh standard normal pair. So the component is chosen
        with probability 1/K and the latent is exactly N(mu_k, diag(exp(logvar_k))), with nothing but exp, log and
        sqrt (which an ONNX export can carry; an inverse normal CDF it cannot)."""
        if self.prior_mu is None or self.prior_logvar is None:
            return noise
        k = self.spec.vamp_components
        pair = noise[:, :2].double()  # (n, 2)
        r2 = pair.pow(2).sum(1, keepdim=True)  # (n, 1)
        scaled = torch.exp(-0.5 * r2) * k  # in (0, K]
        comp = scaled.floor().clamp(max=k - 1)  # (n, 1)
        rest = (scaled - comp).clamp(min=torch.finfo(torch.float64).tiny)  # in (0, 1]
        stretch = torch.sqrt(-2.0 * torch.log(rest) / r2.clamp(min=torch.finfo(torch.float64).tiny))
        eps = torch.cat([(pair * stretch).to(noise.dtype), noise[:, 2:]], dim=1)
        index = comp.long().squeeze(1)
        if self.spec.num_classes:
            index = index + required_labels(labels) * k
        return self.prior_mu[index] + (0.5 * self.prior_logvar[index]).exp() * eps

    # --- net space ---------------------------------------------------------------------------------------------
    def encode_net(self, x: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor]:
        """x (n, *net_shape) -> mu, logvar (n, L)."""
        if self.embed is not None:
            e = self.embed(required_labels(labels))  # (n, label_dim)
            if self.spec.architecture == "conv":
                x = torch.cat([x, e[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)  # (n, C + E, H, W)
            else:
                x = torch.cat([x.flatten(1), e], dim=1)  # (n, features + E)
        elif self.spec.architecture == "mlp":
            x = x.flatten(1)
        mu, logvar = self.to_posterior(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode_raw(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """z (n, L) -> decoder outputs (n, *net_shape): Bernoulli logits, or the Gaussian mean before `mean()`."""
        return self.decoder(self.condition(z, labels))

    def mean(self, raw: Tensor) -> Tensor:
        """E[x|z] in net space: probabilities for Bernoulli, sigmoid means for Gaussian images, raw for points."""
        if self.spec.decoder == "bernoulli" or self.spec.kind == "images":
            return torch.sigmoid(raw)
        return raw

    def log_px(self, raw: Tensor, x: Tensor) -> Tensor:
        """log p(x|z) in nats, summed over dimensions, net space: raw (n, *net_shape), x (n, *net_shape) -> (n,)."""
        if self.spec.decoder == "bernoulli":
            return densities.bernoulli_log_prob(raw, x)
        logvar = self.dec_logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        return densities.gaussian_log_prob(x, self.mean(raw), logvar)

    def log_weights(
        self, x: Tensor, labels: Tensor | None, k: int, generator: torch.Generator | None, eps: Tensor | None = None
    ) -> Tensor:
        """Importance log-weights log p(x, z_i) - log q(z_i|x) for k posterior samples: (k, n), net space.

        `eps` (k, L): standard normal noise shared by every input (so that an input's weights do not depend on
        its position in the batch); None draws fresh noise per input from `generator`.
        """
        mu, logvar = self.encode_net(x, labels)
        if eps is None:
            eps = torch.randn((k, *mu.shape), device=mu.device, dtype=mu.dtype, generator=generator)
        else:
            eps = eps.to(device=mu.device, dtype=mu.dtype)[:, None, :]  # (k, 1, L)
        z = mu + (0.5 * logvar).exp() * eps  # (k, n, L)

        def rep(t: Tensor) -> Tensor:  # (n, ...) -> (k * n, ...), sample-major like z
            return t.expand(k, *t.shape).reshape(-1, *t.shape[1:])

        raw = self.decode_raw(z.reshape(-1, mu.shape[1]), None if labels is None else rep(labels))
        log_px = self.log_px(raw, rep(x)).view(k, -1)
        log_pz = self.log_prior(z, labels)  # (k, n)
        log_qz = densities.diag_gaussian_log_density(z, mu, logvar)  # (k, n)
        return log_px + log_pz - log_qz

    # --- data space (the served interface) ---------------------------------------------------------------------
    def encode(self, x: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor]:
        """x in data space (n, *sample_shape) -> (mu, logvar), each (n, latent_dim)."""
        return self.encode_net(self.to_net(x), labels)

    def reconstruct(self, x: Tensor, labels: Tensor | None) -> Tensor:
        """decode(mu): the deterministic reconstruction, data space."""
        mu, _ = self.encode(x, labels)
        return self.decode(mu, labels)

    def decode(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """What the model shows for latents z, data space: the decoder mean (Bernoulli probabilities for images), or
        with `decoder_output` "mode" the most likely image, each pixel 1 where its probability exceeds 1/2. A
        model trained on binarized images draws a blurred gray map as its mean, which no training image resembles;
        its mode is a binary image like them (bench/quality.py variety, BENCHMARKS.md)."""
        raw = self.decode_raw(z, labels)
        if self.spec.decoder_output == "mode":
            return self.from_net((raw > 0).to(raw.dtype))
        return self.from_net(self.mean(raw))

    def generate(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """Samples from standard normal noise z: `decode` at the prior's latent for z (`prior_sample`)."""
        return self.decode(self.prior_sample(z, labels), labels)

    def log_likelihood_bound(
        self,
        x: Tensor,
        labels: Tensor | None,
        k: int,
        *,
        generator: torch.Generator | None = None,
        eps: Tensor | None = None,
    ) -> Tensor:
        """The IWAE bound (Burda et al. 2015) on log p(x) with k samples, in nats per sample of data space: (n,).

        k = 1 is the ELBO. Evaluated in chunks so that large k fit in memory. `eps` (k, latent_dim): the same
        standard normal noise for every input (see `log_weights`).
        """
        xn = self.to_net(x)
        n = xn.shape[0]
        chunk = max(1, IW_CHUNK_DECODES // k)
        out = []
        for i in range(0, n, chunk):
            lw = self.log_weights(
                xn[i : i + chunk], None if labels is None else labels[i : i + chunk], k, generator, eps
            )
            out.append(torch.logsumexp(lw, dim=0) - math.log(k))
        return torch.cat(out) + self.log_det_data_to_net()
