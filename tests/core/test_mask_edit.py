"""Hand edits of a mask: a stroke changes exactly the pixels under it; undo and redo are byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from lrpseg.core.mask_edit import MaskEdit, stroke_footprint


def _brute_force_stroke(shape, points, size):
    """Pixels whose centre index lies within size/2 of the polyline through the floored points, computed for
    every pixel of the image by sampling each segment densely (independent of stroke_footprint's algebra)."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    cells = [(int(np.floor(x)), int(np.floor(y))) for x, y in points]
    hit = np.zeros(shape, dtype=bool)
    radius2 = (size / 2.0) ** 2 + 1e-9
    for (x0, y0), (x1, y1) in zip([cells[0], *cells[:-1]], cells, strict=True):
        for t in np.linspace(0.0, 1.0, 2001):
            cx, cy = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            hit |= (xs - cx) ** 2 + (ys - cy) ** 2 <= radius2
    return hit


@pytest.mark.parametrize("size", [1, 2, 3, 6, 11])
def test_stroke_changes_exactly_the_pixels_under_it(size):
    rng = np.random.default_rng(size)
    start = rng.random((40, 50)) < 0.3
    edit = MaskEdit(start)
    points = [(3.2, 4.9), (17.7, 9.1), (30.01, 33.99), (30.5, 34.2), (48.9, 2.0)]
    edit.begin_stroke(True, size)
    for x, y in points:
        edit.add_point(x, y)
    assert edit.end_stroke()
    under = _brute_force_stroke(start.shape, points, size)
    np.testing.assert_array_equal(edit.mask, start | under)
    eraser = MaskEdit(start)
    eraser.begin_stroke(False, size)
    for x, y in points:
        eraser.add_point(x, y)
    eraser.end_stroke()
    np.testing.assert_array_equal(eraser.mask, start & ~under)


def test_size_one_paints_the_pixel_under_the_pointer_only():
    edit = MaskEdit(np.zeros((8, 8), bool))
    edit.begin_stroke(True, 1)
    edit.add_point(5.99, 2.01)
    edit.end_stroke()
    assert np.argwhere(edit.mask).tolist() == [[2, 5]]


def test_strokes_off_the_image_are_clipped_and_change_nothing_outside():
    edit = MaskEdit(np.zeros((10, 10), bool))
    edit.begin_stroke(True, 4)
    assert edit.add_point(-30, -30) is None
    edit.add_point(-1, 5)  # the segment from far outside crosses nothing; this point's disc reaches column 0..1
    assert edit.end_stroke()
    assert edit.mask[:, 2:].sum() == 0 and edit.mask[:, 0].sum() > 0


def test_footprint_box_is_clipped():
    box, footprint = stroke_footprint((5, 5), (0, 0), (0, 0), 5)
    assert box == (0, 3, 0, 3) and footprint.shape == (3, 3)


def test_undo_redo_restore_the_mask_byte_for_byte():
    rng = np.random.default_rng(0)
    edit = MaskEdit(rng.random((64, 80)) < 0.4)
    states = [edit.mask.tobytes()]
    for i in range(12):
        edit.begin_stroke(i % 3 != 0, 1 + 3 * (i % 4))
        for _ in range(5):
            edit.add_point(*(rng.random(2) * (80, 64)))
        edit.end_stroke()
        states.append(edit.mask.tobytes())
    edit.fill_holes()
    states.append(edit.mask.tobytes())
    edit.clear()
    states.append(edit.mask.tobytes())
    edit.replace(rng.random((64, 80)) < 0.5)
    states.append(edit.mask.tobytes())
    assert len(set(states)) == len(states)  # every step changed something
    for expected in reversed(states[:-1]):
        assert edit.undo() is not None
        assert edit.mask.tobytes() == expected
    assert edit.undo() is None
    for expected in states[1:]:
        assert edit.redo() is not None
        assert edit.mask.tobytes() == expected
    assert edit.redo() is None


def test_a_new_step_drops_the_redo_tail_and_no_op_strokes_leave_no_step():
    edit = MaskEdit(np.zeros((20, 20), bool))
    edit.begin_stroke(False, 5)  # erasing nothing
    edit.add_point(3, 3)
    assert not edit.end_stroke() and edit.steps() == 0
    edit.begin_stroke(True, 3)
    edit.add_point(3, 3)
    edit.end_stroke()
    edit.undo()
    assert edit.can_redo()
    edit.begin_stroke(True, 3)
    edit.add_point(10, 10)
    edit.end_stroke()
    assert not edit.can_redo() and edit.steps() == 1


def test_fill_holes_fills_enclosed_background_only():
    mask = np.zeros((12, 12), bool)
    mask[2:9, 2:9] = True
    mask[4:7, 4:7] = False  # a hole
    mask[0, 5:8] = True  # open at the border: not a hole
    edit = MaskEdit(mask)
    edit.fill_holes()
    expected = mask.copy()
    expected[4:7, 4:7] = True
    np.testing.assert_array_equal(edit.mask, expected)


def test_history_is_bounded_by_bytes():
    edit = MaskEdit(np.zeros((100, 100), bool), history_bytes=50_000)
    for i in range(10):
        edit.replace(np.full((100, 100), i % 2 == 0))
    assert 1 <= edit.steps() < 10


def test_replace_refuses_another_shape():
    with pytest.raises(ValueError, match="shape"):
        MaskEdit(np.zeros((4, 4), bool)).replace(np.zeros((4, 5), bool))
