"""The napari side of napari-vidseg: the only package that imports napari, qtpy or magicgui."""
