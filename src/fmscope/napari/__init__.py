"""napari front end: the only fmscope package that imports napari, Qt or magicgui."""
