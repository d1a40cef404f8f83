"""What generation training and ``ldm-med generate`` share: the attribute conditioning channels, the
generation model file (loading and what it says about its classes), and guided latent sampling."""
