"""lrpseg desktop application (PySide6 + pyqtgraph); holds no algorithm, calls ``core``."""
