"""When following an object from slice to slice (or frame to frame) ends: :class:`StopRule`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StopRule:
    """When propagation of one object ends (used by the LiteMedSAM tracker, which volume propagation runs).

    Past the object's end the model tends to outline whatever lies in the box (e.g. lung air next to a
    tumour); a mask is kept only while its area, the model's confidence and its mean intensity stay close
    to the prompted slice's.
    """

    min_area_fraction: float = 0.1  # of the object's area on the key slice
    min_score: float = 0.5  # the model's IoU estimate
    max_intensity_shift: float = 0.25  # |mean - key-slice mean| as a fraction of the mapped 0..255 range
    box_margin: float = 2.0  # pixels added around the previous mask's box

    def keeps(self, area: int, key_area: int, score: float, intensity_shift: float) -> bool:
        """Whether a slice's mask still belongs to the object."""
        return (
            area > 0
            and area >= self.min_area_fraction * key_area
            and score >= self.min_score
            and intensity_shift <= self.max_intensity_shift
        )
