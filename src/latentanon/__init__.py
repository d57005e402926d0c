"""latentanon: latent-space anonymization of video features (Anonymizing Adapter Module)."""

__version__ = "0.1.0"
