"""Adversarial attacks for robustness evaluation (``dc.attacks``): FGSM and PGD."""
from .gradient import fgsm, pgd

__all__ = ["fgsm", "pgd"]
