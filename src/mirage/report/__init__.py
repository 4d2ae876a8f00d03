"""The run report: one self-contained HTML page (images and plots embedded) built from a run directory's files."""

from .build import REPORT, build_report, write_report
from .gallery import DEFAULT_MAX_IMAGES

__all__ = ["DEFAULT_MAX_IMAGES", "REPORT", "build_report", "write_report"]
