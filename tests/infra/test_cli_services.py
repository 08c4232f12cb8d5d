"""`lpm services env`: shell-evaluable, secrets only when asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infra.local.ports import isolated_settings
from orchestration.cli.services import env_lines


def test_env_lines_hide_secrets_unless_shown(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path)
    hidden = "\n".join(env_lines(settings, show_secrets=False))
    shown = "\n".join(env_lines(settings, show_secrets=True))
    assert settings.secret_key not in hidden and "# export AWS_SECRET_ACCESS_KEY=" in hidden
    assert f"export MLFLOW_TRACKING_URI={settings.mlflow_uri}" in hidden
    assert settings.secret_key in shown


def test_eval_of_env_output_points_a_shell_at_the_stack(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path)
    lpm = f"{sys.executable} -c 'import sys; from orchestration.cli import main; sys.exit(main())'"
    script = f'eval "$({lpm} services env)"; echo "$MLFLOW_TRACKING_URI|$AWS_SECRET_ACCESS_KEY"'
    env = {**os.environ, **{k: v for k, v in settings.client_env().items()}}
    env.pop("AWS_SECRET_ACCESS_KEY")
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == f"{settings.mlflow_uri}|{settings.secret_key}"


def test_logs_prints_the_tail_or_fails_clearly(tmp_path: Path, monkeypatch, capsys) -> None:
    from orchestration.cli import main

    monkeypatch.setenv("LPM_HOME", str(tmp_path))
    assert main(["services", "logs", "mlflow"]) == 1
    assert "no log yet" in capsys.readouterr().err
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "mlflow.log").write_text("a\nb\nc\n")
    assert main(["services", "logs", "mlflow", "-n", "2"]) == 0
    assert capsys.readouterr().out == "b\nc\n"
