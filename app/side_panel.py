"""The side panel: explanation choices, the live threshold, the score histogram and the overlay controls.

The panel holds no state of its own beyond its widgets: it emits what the user asked for and the main window
decides what that means (per-image override, re-analysis, ...).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from lrpseg.app.viewer import HEATMAP_OPACITY, MASK_OPACITY
from lrpseg.app.workers import display_text
from PySide6.QtCore import QPointF, QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPolygonF
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QStyle,
    QStyleOptionSlider,
    QVBoxLayout,
    QWidget,
)

SLIDER_STEPS = 1000
FIT_DECADES = 7
PLOT_HEIGHT = 96  # both plots and the overlay controls fit a 1280×800 window without scrolling
X_LABEL_OVERHANG = 14
AXIS_WIDTH = 52  # room for the axis title beside tick labels such as "10⁴"
FIT_TITLE = "Mixture fit"
FIT_TIP = ("How strongly each pixel looks like damage (grey histogram), and the two groups the segmenter found "
           "in it (coloured curves); vertical axis logarithmic")
SYNC_INTERVAL_MS = 40
COMPONENT_COLOURS = ("#58a6ff", "#ff7b72", "#d2a8ff", "#7ee787")


class ThresholdSlider(QSlider):
    """A horizontal 0..1 slider (1000 steps) that marks the segmenter's default threshold with a triangle."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.setRange(0, SLIDER_STEPS)
        self.setSingleStep(5)
        self.setPageStep(50)
        self._default: float | None = None

    def set_default(self, value: float | None) -> None:
        """Where to draw the default-threshold marker (``None`` hides it)."""
        self._default = value
        self.update()

    def threshold(self) -> float:
        """The slider position as a threshold in [0, 1]."""
        return self.value() / SLIDER_STEPS

    def set_threshold(self, value: float) -> None:
        """Move the handle to ``value`` (emits ``valueChanged`` if it moved)."""
        self.setValue(round(float(np.clip(value, 0.0, 1.0)) * SLIDER_STEPS))

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().paintEvent(event)
        if self._default is None:
            return
        option = QStyleOptionSlider()
        self.initStyleOption(option)
        groove = self.style().subControlRect(
            QStyle.ComplexControl.CC_Slider, option, QStyle.SubControl.SC_SliderGroove, self
        )
        handle = self.style().subControlRect(
            QStyle.ComplexControl.CC_Slider, option, QStyle.SubControl.SC_SliderHandle, self
        )
        span = groove.width() - handle.width()
        x = (
            groove.x()
            + handle.width() / 2
            + QStyle.sliderPositionFromValue(
                self.minimum(), self.maximum(), round(self._default * SLIDER_STEPS), span
            )
        )
        y = self.height() - 1
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#f0b72f"))
        painter.drawPolygon(QPolygonF([QPointF(x - 5, y), QPointF(x + 5, y), QPointF(x, y - 6)]))
        painter.end()


class SidePanel(QWidget):
    """Controls for the current image; every change is reported by a signal."""

    rule_set_changed = Signal(str)
    segmenter_changed = Signal(str)
    threshold_changed = Signal(float)
    threshold_reset = Signal()
    heatmap_toggled = Signal(bool)
    heatmap_opacity_changed = Signal(float)
    mask_toggled = Signal(bool)
    mask_opacity_changed = Signal(float)
    mask_style_changed = Signal(str)

    def __init__(self, rule_sets: Sequence[str], segmenters: Sequence[str], parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("SidePanel")
        self._default: float | None = None
        self._sync_timer = QTimer(self)
        self._sync_timer.setSingleShot(True)
        self._sync_timer.setInterval(SYNC_INTERVAL_MS)
        self._sync_timer.timeout.connect(self._sync_threshold_widgets)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(10)

        self.title = QLabel("No image")
        self.title.setObjectName("ImageTitle")
        self.title.setWordWrap(True)
        self.info = QLabel("")
        self.info.setObjectName("ImageInfo")
        self.info.setWordWrap(True)
        layout.addWidget(self.title)
        layout.addWidget(self.info)

        explain = QGroupBox("Explanation")
        form = QFormLayout(explain)
        self.rule_set = QComboBox()
        self.rule_set.addItems(list(rule_sets))
        self.rule_set.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.rule_set.setMinimumContentsLength(12)
        self.rule_set.setToolTip("LRP rule set used to explain the 'damaged' decision")
        self.segmenter = QComboBox()
        self.segmenter.addItems(list(segmenters))
        self.segmenter.setToolTip("How the relevance map becomes a score map and a mask")
        form.addRow("Rule set", self.rule_set)
        form.addRow("Segmenter", self.segmenter)
        layout.addWidget(explain)

        threshold = QGroupBox("Threshold")
        box = QVBoxLayout(threshold)
        self.slider = ThresholdSlider()
        self.slider.setToolTip("Mask = score ≥ threshold; remembered per image. ▲ marks the method's default")
        row = QHBoxLayout()
        self.spin = QDoubleSpinBox()
        self.spin.setRange(0.0, 1.0)
        self.spin.setDecimals(3)
        self.spin.setSingleStep(0.005)
        self.spin.setKeyboardTracking(False)
        self.spin.setToolTip("The threshold as a number; type one and press Enter ([ and ] nudge it)")
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Back to the segmenter's default threshold (R)")
        self.default_label = QLabel("default —")
        self.default_label.setWordWrap(True)
        self.default_label.setMinimumWidth(40)
        self.default_label.setObjectName("Muted")
        self.default_label.setToolTip("The segmenter's own threshold for this image (marked ▲ on the slider); "
                                      "“per-image” when you moved it")
        row.addWidget(self.spin)
        row.addWidget(self.default_label, 1)
        row.addWidget(self.reset_button)
        box.addWidget(self.slider)
        box.addLayout(row)
        self.histogram = self._plot("score", "pixels")
        self.histogram.setToolTip("How many pixels have each damage score (log₁₀(1 + count)); the yellow line is "
                                  "the threshold (drag it), the dashed line the segmenter's default")
        self.histogram.setXRange(0, 1, padding=0.02)
        self._bars = pg.PlotDataItem(
            stepMode="center", fillLevel=0, brush=(139, 148, 158, 90), pen=pg.mkPen("#8b949e", width=1)
        )
        self.histogram.addItem(self._bars)
        self._default_line = pg.InfiniteLine(
            angle=90, movable=False, pen=pg.mkPen("#f0b72f", width=1, style=Qt.PenStyle.DashLine)
        )
        self._threshold_line = pg.InfiniteLine(
            angle=90,
            movable=True,
            pen=pg.mkPen("#ffd600", width=2),
            hoverPen=pg.mkPen("#ffffff", width=2),
            bounds=(0, 1),
        )
        self._threshold_line.setToolTip("Drag to move the threshold")
        self.histogram.addItem(self._default_line)
        self.histogram.addItem(self._threshold_line)
        self.fit_plot = self._plot("", "density")
        self.fit_plot.setLogMode(x=False, y=True)  # mixture densities span orders of magnitude
        self.fit_plot.getAxis("left").setStyle(showValues=False)  # densities like 10⁻⁴ mean nothing to a user
        self.fit_plot.setToolTip(FIT_TIP)
        self._fit_bars = pg.PlotDataItem(
            stepMode="center", fillLevel=0, brush=(139, 148, 158, 70), pen=pg.mkPen("#8b949e", width=1)
        )
        self.fit_plot.addItem(self._fit_bars)
        # Curves are created once and only get new data per image: building plot items costs milliseconds.
        self._curves = [self.fit_plot.plot([], [], pen=pg.mkPen(colour, width=2)) for colour in COMPONENT_COLOURS]
        self._legend_names: tuple[str, ...] = ()
        for plot in (self.histogram, self.fit_plot):
            plot.disableAutoRange()
        self.fit_title = QLabel(FIT_TITLE)
        self.fit_title.setObjectName("Muted")
        self.fit_title.setWordWrap(True)
        self.histogram_note = QLabel("")
        self.histogram_note.setObjectName("Muted")
        self.histogram_note.setWordWrap(True)
        box.addWidget(self.histogram)
        box.addWidget(self.fit_title)
        box.addWidget(self.fit_plot)
        box.addWidget(self.histogram_note)
        layout.addWidget(threshold)

        overlays = QGroupBox("Overlays")
        grid = QFormLayout(overlays)
        self.heatmap_check = QCheckBox("Relevance heatmap")
        self.heatmap_check.setChecked(True)
        self.heatmap_check.setToolTip("Signed relevance: red for damaged evidence, blue against (H)")
        self.heatmap_opacity = self._opacity_slider(round(100 * HEATMAP_OPACITY))
        self.mask_check = QCheckBox("Mask")
        self.mask_check.setChecked(True)
        self.mask_check.setToolTip("The mask at the current threshold (M)")
        self.mask_opacity = self._opacity_slider(round(100 * MASK_OPACITY))
        self.mask_style = QComboBox()
        self.mask_style.addItems(["fill", "outline"])
        self.mask_style.setToolTip("Draw the mask filled or as its outline (O)")
        grid.addRow(self.heatmap_check, self.heatmap_opacity)
        grid.addRow(self.mask_check, self.mask_opacity)
        grid.addRow("Mask style", self.mask_style)
        layout.addWidget(overlays)
        layout.addStretch(1)

        self.rule_set.currentTextChanged.connect(self.rule_set_changed)
        self.segmenter.currentTextChanged.connect(self.segmenter_changed)
        self.slider.valueChanged.connect(self._slider_moved)
        self.spin.valueChanged.connect(self._spin_changed)
        self._threshold_line.sigPositionChanged.connect(self._line_moved)
        self.reset_button.clicked.connect(self.threshold_reset)
        self.heatmap_check.toggled.connect(self.heatmap_toggled)
        self.mask_check.toggled.connect(self.mask_toggled)
        self.heatmap_opacity.valueChanged.connect(lambda v: self.heatmap_opacity_changed.emit(v / 100))
        self.mask_opacity.valueChanged.connect(lambda v: self.mask_opacity_changed.emit(v / 100))
        self.mask_style.currentTextChanged.connect(self.mask_style_changed)
        self.set_threshold_enabled(False)

    @staticmethod
    def _opacity_slider(value: int) -> QSlider:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(0, 100)
        slider.setValue(value)
        slider.setToolTip("Opacity of the overlay")
        return slider

    # ----------------------------------------------------------------- threshold
    def _slider_moved(self, value: int) -> None:
        # The overlay follows every tick; the number and the histogram line follow at most every
        # SYNC_INTERVAL_MS, so a drag repaints one image per tick and not the plot's axes too.
        self.threshold_changed.emit(value / SLIDER_STEPS)
        if not self._sync_timer.isActive():
            self._sync_timer.start()

    def _sync_threshold_widgets(self) -> None:
        threshold = self.slider.threshold()
        with QSignalBlocker(self.spin), QSignalBlocker(self._threshold_line):
            self.spin.setValue(threshold)
            self._threshold_line.setValue(threshold)

    def _spin_changed(self, value: float) -> None:
        self.slider.set_threshold(value)

    def _line_moved(self) -> None:
        self.slider.set_threshold(float(self._threshold_line.value()))

    def threshold(self) -> float:
        """The threshold the controls show."""
        return self.slider.threshold()

    def show_threshold(self, value: float, default: float | None, overridden: bool) -> None:
        """Show a threshold without emitting :attr:`threshold_changed` (a new image was selected)."""
        self._default = default
        self.slider.set_default(default)
        with QSignalBlocker(self.slider), QSignalBlocker(self.spin), QSignalBlocker(self._threshold_line):
            self.slider.set_threshold(value)
            self.spin.setValue(self.slider.threshold())
            self._threshold_line.setValue(self.slider.threshold())
        if default is None:
            self.default_label.setText("default —")
            self._default_line.hide()
        else:
            self.default_label.setText(f"default {default:.3f}{'  · per-image' if overridden else ''}")
            self._default_line.setValue(default)
            self._default_line.show()

    def set_threshold_enabled(self, enabled: bool) -> None:
        """Grey the threshold controls out while there is no score map."""
        for widget in (self.slider, self.spin, self.reset_button):
            widget.setEnabled(enabled)
        self._threshold_line.setMovable(enabled)

    # ----------------------------------------------------------------- histogram
    @staticmethod
    def _plot(bottom: str, left: str) -> pg.PlotWidget:
        plot = pg.PlotWidget(background=None)
        plot.setFixedHeight(PLOT_HEIGHT)
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(False, False)
        plot.hideButtons()
        if bottom:
            plot.setLabel("bottom", bottom)
        plot.setLabel("left", left)
        plot.getAxis("left").setWidth(AXIS_WIDTH)
        # the last x tick label ("1.0") overhangs the axis by half its width: leave room and allow it
        plot.getPlotItem().layout.setContentsMargins(0, 4, X_LABEL_OVERHANG, 0)
        plot.getAxis("bottom").setStyle(hideOverlappingLabels=X_LABEL_OVERHANG)
        return plot

    def set_distribution(
        self,
        score_edges: np.ndarray | None = None,
        score_counts: np.ndarray | None = None,
        fit_edges: np.ndarray | None = None,
        fit_density: np.ndarray | None = None,
        curves: Sequence[tuple[str, np.ndarray, np.ndarray]] = (),
        domain: str = "",
        note: str = "",
        note_detail: str = "",
    ) -> None:
        """Draw the score histogram and, when given, the mixture's data with its fitted components.

        ``*_edges`` have one more entry than the counts; ``curves`` are ``(name, x, y)``, named in colour in
        the title above the plot (a legend inside it hid the curves). ``domain`` (what exactly was fitted) and
        ``note_detail`` are technical and shown as tooltips.
        """
        if score_edges is None or score_counts is None:
            self._bars.setData([], [])
        else:
            counts = np.asarray(score_counts, float)
            self._bars.setData(np.asarray(score_edges, float), counts)
            self.histogram.setYRange(0, max(1.0, float(counts.max())) * 1.05, padding=0)
        has_fit = fit_edges is not None and fit_density is not None
        curves = list(curves)[: len(self._curves)] if has_fit else []
        if has_fit:
            density = np.asarray(fit_density, float)
            self._fit_bars.setData(np.asarray(fit_edges, float), density)
            # log axis: seven decades below the highest density; the bars fill down to the bottom
            top = np.log10(max([float(density.max())] + [float(np.max(y)) for _, _, y in curves] + [1e-12]))
            self._fit_bars.setFillLevel(top - FIT_DECADES)
            self.fit_plot.setRange(xRange=(float(fit_edges[0]), float(fit_edges[-1])),
                                   yRange=(top - FIT_DECADES, top + 0.2), padding=0.02)
            self.fit_title.setToolTip(f"{FIT_TIP}. Fitted to: {domain}" if domain else FIT_TIP)
        else:
            self._fit_bars.setData([], [])
        for i, item in enumerate(self._curves):
            if i < len(curves):
                item.setData(np.asarray(curves[i][1], float), np.asarray(curves[i][2], float))
            else:
                item.setData([], [])
        names = tuple(name for name, _, _ in curves)
        if names != self._legend_names:
            key = " ".join(f"<span style='color:{colour}'>━ {name}</span>"
                           for colour, name in zip(COMPONENT_COLOURS, names, strict=False))
            self.fit_title.setText(f"{FIT_TITLE}: {key}" if key else FIT_TITLE)
            self._legend_names = names
        self.fit_plot.setVisible(has_fit)
        self.fit_title.setVisible(has_fit)
        self.histogram_note.setText(display_text(note))
        self.histogram_note.setToolTip(display_text(note_detail))
        self.histogram_note.setVisible(bool(note))

    # ----------------------------------------------------------------- choices
    def set_choice(self, combo: QComboBox, value: str) -> None:
        """Select ``value`` in ``combo`` without emitting its change signal."""
        with QSignalBlocker(combo):
            index = combo.findText(value)
            if index >= 0:
                combo.setCurrentIndex(index)

    def set_image_info(self, title: str, info: str) -> None:
        """The current image's name and a line about its label, prediction and analysis."""
        self.title.setText(display_text(title))
        self.info.setText(display_text(info))
