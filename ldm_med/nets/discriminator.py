"""PatchGAN discriminator (MONAI ``PatchDiscriminator``) for adversarial autoencoder training."""

from __future__ import annotations

from monai.networks.nets import PatchDiscriminator

from ldm_med.nets.cpu import use_onednn_convs


def build_discriminator(
    spatial_dims: int, channels: int = 32, num_layers: int = 3, in_channels: int = 1
) -> PatchDiscriminator:
    """A PatchGAN over slices (2D) or volumes (3D); ``forward`` returns a list of features whose
    last element is the patch logits map."""
    disc = PatchDiscriminator(
        spatial_dims=spatial_dims,
        num_layers_d=num_layers,
        channels=channels,
        in_channels=in_channels,
    )
    return use_onednn_convs(disc)
