"""Run a composite action's steps as the GitHub Actions runner would, on this machine.

Each ``run`` step's script goes to ``bash --noprofile --norc -eo pipefail`` (the runner's
``shell: bash``) in the step's working directory, with the runner's files in a temporary
directory: a fresh ``GITHUB_OUTPUT``, ``GITHUB_ENV`` and ``GITHUB_STEP_SUMMARY`` per step,
read back after it as the runner does (outputs into ``steps.<id>.outputs``, variables into
the environment of later steps). ``${{ }}`` expressions in ``env``, ``working-directory``,
``if`` and input defaults are evaluated by a small interpreter that knows the contexts and
operators the actions use, and nothing more: anything else fails the test.

``uses:`` steps (actions/setup-python) and the step with id ``install`` (pip: the package
is already installed here) are not run and count as successful.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_IDS = {"install"}

_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_TOKEN = re.compile(
    r"\s*('(?:[^']|'')*'|&&|\|\||==|!=|!|\(|\)|[A-Za-z_][\w.-]*\(\)|[A-Za-z_][\w.-]*)"
)


@dataclass
class Step:
    id: str
    outcome: str
    """``success``, ``failure`` or ``skipped``, as ``steps.<id>.outcome``."""
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""


@dataclass
class Job:
    steps: list[Step]
    outputs: dict[str, str]
    env: dict[str, str]

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    @property
    def summary(self) -> str:
        return "".join(s.summary for s in self.steps)

    @property
    def stdout(self) -> str:
        return "".join(s.stdout for s in self.steps)

    @property
    def everything(self) -> str:
        """All a job leaves behind for people to read: logs, summary, outputs."""
        outputs = json.dumps([s.outputs for s in self.steps])
        return "".join(s.stdout + s.stderr for s in self.steps) + self.summary + outputs


def parse_file_commands(text: str) -> dict[str, str]:
    """``name=value`` lines and ``name<<DELIMITER`` blocks, as GITHUB_OUTPUT/GITHUB_ENV hold."""
    values: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body = []
            while lines[i] != delimiter:
                body.append(lines[i])
                i += 1
            i += 1
            values[name] = "\n".join(body)
        else:
            name, value = line.split("=", 1)
            values[name] = value
    return values


class ActionRunner:
    """One job running one composite action (``actions/<name>/action.yml``)."""

    def __init__(
        self,
        name: str,
        *,
        workspace: Path,
        runner_temp: Path,
        inputs: Mapping[str, str],
        github: Mapping[str, str],
        env: Mapping[str, str],
    ) -> None:
        self.action_path = ROOT / "actions" / name
        self.action = yaml.safe_load((self.action_path / "action.yml").read_text())
        assert self.action["runs"]["using"] == "composite"
        self.workspace = workspace
        self.temp = runner_temp
        self.github = {**github, "action_path": str(self.action_path), "workspace": str(workspace)}
        self.steps: dict[str, Step] = {}
        self.failed = False
        self.inputs: dict[str, str] = {}
        for key, spec in self.action.get("inputs", {}).items():
            given = inputs.get(key)
            self.inputs[key] = (
                given if given is not None else self.substitute(str(spec.get("default", "")))
            )
        unknown = set(inputs) - set(self.inputs)
        assert not unknown, f"the action has no inputs {unknown}"
        self.env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(runner_temp / "home"),
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_ACTION_PATH": str(self.action_path),
            "RUNNER_TEMP": str(runner_temp),
            **env,
        }

    # --- expressions -------------------------------------------------------------------------

    def _value(self, path: str) -> Any:
        context, _, rest = path.partition(".")
        if context == "inputs":
            return self.inputs[rest]
        if context == "github":
            return self.github.get(rest, "")
        if context == "steps":
            step_id, _, what = rest.partition(".")
            step = self.steps.get(step_id, Step(step_id, ""))
            if what == "outcome":
                return step.outcome
            assert what.startswith("outputs."), path
            return step.outputs.get(what.removeprefix("outputs."), "")
        raise AssertionError(f"unknown context in {path!r}")

    def evaluate(self, expression: str) -> Any:
        """The few operators the actions use: == != && || ! ( ), status functions, literals."""
        python = []
        position = 0
        while position < len(expression.rstrip()):
            match = _TOKEN.match(expression, position)
            assert match, f"cannot evaluate {expression!r} at {position}"
            token = match.group(1)
            position = match.end()
            if token.startswith("'"):
                python.append(repr(token[1:-1].replace("''", "'")))
            elif token in ("&&", "||", "!"):
                python.append({"&&": " and ", "||": " or ", "!": " not "}[token])
            elif token in ("==", "!=", "(", ")"):
                python.append(f" {token} ")
            elif token.endswith("()"):
                status = {
                    "always()": True,
                    "cancelled()": False,
                    "success()": not self.failed,
                    "failure()": self.failed,
                }
                python.append(repr(status[token]))
            else:
                python.append(repr(self._value(token)))
        return eval("".join(python), {"__builtins__": {}})

    def substitute(self, text: str) -> str:
        return _EXPRESSION.sub(lambda m: str(self.evaluate(m.group(1))), text)

    def _condition(self, raw: object) -> bool:
        if raw is None:
            return not self.failed
        text = str(raw).strip()
        match = _EXPRESSION.fullmatch(text)
        return bool(self.evaluate(match.group(1) if match else text))

    # --- steps -------------------------------------------------------------------------------

    def run(self, stop_after: str | None = None) -> Job:
        for number, spec in enumerate(self.action["runs"]["steps"]):
            step_id = spec.get("id", f"__{number}")
            if "uses" in spec or step_id in SKIPPED_IDS:
                self.steps[step_id] = Step(step_id, "success")
            elif not self._condition(spec.get("if")):
                self.steps[step_id] = Step(step_id, "skipped")
            else:
                self.steps[step_id] = self._run_step(step_id, spec)
            if step_id == stop_after:
                break
        outputs = {
            name: self.substitute(str(spec["value"]))
            for name, spec in self.action.get("outputs", {}).items()
        }
        return Job(list(self.steps.values()), outputs, dict(self.env))

    def _run_step(self, step_id: str, spec: Mapping[str, Any]) -> Step:
        assert spec["shell"] == "bash", spec
        files = self.temp / "_runner_file_commands" / step_id
        files.mkdir(parents=True)
        output, env_file, summary = files / "output", files / "env", files / "summary"
        for path in (output, env_file, summary):
            path.touch()
        script = files / "script.sh"
        script.write_text(spec["run"])

        env = {
            **self.env,
            **{k: self.substitute(str(v)) for k, v in (spec.get("env") or {}).items()},
            "GITHUB_OUTPUT": str(output),
            "GITHUB_ENV": str(env_file),
            "GITHUB_STEP_SUMMARY": str(summary),
        }
        cwd = self.workspace / self.substitute(str(spec.get("working-directory", ".")))
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.env.update(parse_file_commands(env_file.read_text()))
        outcome = "success" if done.returncode == 0 else "failure"
        self.failed = self.failed or outcome == "failure"
        return Step(
            step_id,
            outcome,
            done.stdout,
            done.stderr,
            parse_file_commands(output.read_text()),
            summary.read_text(),
        )
