"""forager shim: make the ABCs removed from `collections` in Python 3.10 importable again.

Old code (requests <= 2.9's vendored urllib3, sympy 1.0/1.1, ...) does
`from collections import Mapping, MutableMapping, ...`. This copies every name of
`collections.abc` that `collections` lacks into `collections`. Loaded at interpreter start by
`forager_collections_compat.pth` in site-packages. Harmless for code that uses collections.abc.
"""
import collections
import collections.abc

for _name in collections.abc.__all__:
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))
del _name
