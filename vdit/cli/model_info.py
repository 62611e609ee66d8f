"""`vdit model-info`: parameter counts and feature levels of a preset, built on the meta device."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model-info", help="trainable/frozen parameter counts and feature levels (no weights loaded)")
    p.add_argument("--preset", default="full", help="model preset: full | tiny | mini (default: full)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. backbone.prompt.mode=concat (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def model_info(preset_name: str, overrides: list[str] | None = None) -> dict:
    from vdit.cli.presets import model_presets
    from vdit.config import apply_overrides, preset
    from vdit.models.summary import parameter_summary
    from vdit.models.vdit import VDIT

    cfg = apply_overrides(preset(preset_name, model_presets()), overrides or [])
    model = VDIT.on_meta(cfg)
    info = parameter_summary(model)
    info["levels"] = [{"channels": c, "stride": s} for c, s in
                      zip(cfg.backbone.level_channels, cfg.backbone.level_strides)]
    info["preset"] = preset_name
    return info


def run(args: argparse.Namespace) -> int:
    info = model_info(args.preset, args.overrides)
    if args.json:
        from vdit.fileio import dumps_json

        print(dumps_json(info, indent=2))
        return 0
    print(f"VD-IT preset '{args.preset}' (built on the meta device, no weights loaded)")
    print(f"{'component':<20}{'trainable':>15}{'frozen':>17}")
    for name, c in info["components"].items():
        print(f"{name:<20}{c['trainable']:>15,}{c['frozen']:>17,}")
    print(f"{'total':<20}{info['trainable_total']:>15,}{info['frozen_total']:>17,}")
    print("feature levels: " + ", ".join(f"{lv['channels']} ch @ s{lv['stride']}" for lv in info["levels"]))
    return 0
