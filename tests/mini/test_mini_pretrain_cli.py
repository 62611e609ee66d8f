"""`vdit mini pretrain` argument handling (the training itself is covered by test_mini_build)."""
from vdit.cli.main import build_parser, main


def test_pretrain_parser_defaults():
    args = build_parser().parse_args(["mini", "pretrain"])
    assert args.out == "mini-foundation" and args.seed == 0 and args.threads == 2
    assert args.minutes_budget is None and args.data is None and args.samples is None


def test_samples_inside_out_is_refused(tmp_path, capsys):
    out = tmp_path / "foundation"
    assert main(["mini", "pretrain", "--out", str(out), "--samples", str(out / "grid.png")]) == 2
    assert "must lie outside --out" in capsys.readouterr().err
    assert not out.exists()


def test_bad_threads_and_budget_are_refused(tmp_path, capsys):
    assert main(["mini", "pretrain", "--out", str(tmp_path / "o"), "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err
    assert main(["mini", "pretrain", "--out", str(tmp_path / "o"), "--minutes-budget", "0",
                 "--threads", "1"]) == 2
    assert "--minutes-budget" in capsys.readouterr().err
