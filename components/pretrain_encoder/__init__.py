from components.pretrain_encoder.component import pretrain_encoder

__all__ = ["pretrain_encoder"]
