"""Converters from other checkpoint formats to vdit weights folders (see docs/convert.md).

`official`: the released VD-IT checkpoints (legacy torch pickles holding the full official state_dict).
"""
