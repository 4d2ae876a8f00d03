"""The run report: one self-contained HTML page (images and plots embedded) built from a run directory's files."""

from .build import REPORT
from .gallery import DEFAULT_MAX_IMAGES
from .page import build_report, write_report

__all__ = ["DEFAULT_MAX_IMAGES", "REPORT", "build_report", "write_report"]
