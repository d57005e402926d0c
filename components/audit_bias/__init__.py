from components.audit_bias.component import audit_bias

__all__ = ["audit_bias"]
