"""The hint line above the viewer: what to do next, from the project's state (label → train → inspect → export).

:func:`next_step` is a plain function of a :class:`ProjectState`, so each step's wording is tested without a
window; the window rebuilds the state whenever labels, the model, a job or an export change.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProjectState:
    """What the hint depends on."""

    has_folder: bool = False
    images: int = 0
    damaged: int = 0
    undamaged: int = 0
    has_model: bool = False
    training: bool = False
    exporting: bool = False
    exported_to: str | None = None
    min_per_class: int = 2


def next_step(state: ProjectState) -> str:
    """One sentence (rich text) saying where the user is in label → train → inspect → export and what to do."""
    if not state.has_folder:
        return "<b>Start:</b> open a folder of images (Ctrl+O)."
    if state.images == 0:
        return "<b>Start:</b> this folder has no images lrpseg can read; open another one (Ctrl+O)."
    if state.training:
        return ("<b>2 Train:</b> training runs in the background; keep labelling meanwhile, or Esc to cancel.")
    if state.exporting:
        return "<b>4 Export:</b> writing the masks; Esc cancels (masks written so far stay complete)."
    need_d = max(0, state.min_per_class - state.damaged)
    need_u = max(0, state.min_per_class - state.undamaged)
    if not state.has_model and (need_d or need_u):
        missing = " and ".join(f"{n} more {kind}" for n, kind in ((need_d, "damaged"), (need_u, "undamaged"))
                               if n)
        return (f"<b>1 Label:</b> press D (damaged) or U (undamaged) for each image; {missing} before the "
                "first training.")
    if not state.has_model:
        return (f"<b>2 Train:</b> {state.damaged} damaged and {state.undamaged} undamaged labels: press Train "
                "(Ctrl+T). More labels give a better model.")
    if state.exported_to is None:
        return ("<b>3 Inspect:</b> check each mask; drag the threshold where it is wrong. Sort by "
                "“Label ≠ prediction” to find images to label, then Retrain. <b>4 Export</b> (Ctrl+E) when done.")
    return (f"<b>Exported</b> to {state.exported_to}. Label more and Retrain to improve the masks, then export "
            "again (Ctrl+E).")
