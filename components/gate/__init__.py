from components.gate.component import gate, promote

__all__ = ["gate", "promote"]
