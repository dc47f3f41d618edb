"""napari tests need a display: pytest-xvfb starts Xvfb (installed by `make test`)."""
