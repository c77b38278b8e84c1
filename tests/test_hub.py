"""`slovo export --push-to-hub`: huggingface_hub's own HfApi uploads the export to a local stand-in of the Hub's
HTTP API on 127.0.0.1 (the endpoints `create_repo` and `upload_folder` call: create, validate-yaml, preupload,
commit); no network. The stand-in answers "regular" (not LFS) for every file, so the files arrive inside the commit."""

from __future__ import annotations

import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from test_generate import make_checkpointed_run  # noqa: E402

from slovo.cli import main  # noqa: E402

hub_constants = pytest.importorskip("huggingface_hub.constants")


class FakeHub(BaseHTTPRequestHandler):
    """Records what it is sent; `refuse` makes every request a 403."""

    def _reply(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        hub = self.server.hub
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hub["requests"].append(("POST", self.path, self.headers.get("Authorization")))
        base = f"http://127.0.0.1:{self.server.server_port}"
        if hub["refuse"]:
            return self._reply(403, {"error": "You don't have the rights to create a model under this namespace"})
        if self.path == "/api/repos/create":
            hub["create"] = json.loads(body)
            return self._reply(200, {"url": f"{base}/{hub['repo']}", "name": hub["repo"]})
        if self.path == "/api/validate-yaml":  # the Hub checks a README's metadata before the commit
            hub["card"] = json.loads(body)["content"]
            return self._reply(200, {"warnings": []})
        if "/preupload/" in self.path:
            paths = [f["path"] for f in json.loads(body)["files"]]
            files = [{"path": p, "uploadMode": "regular", "shouldIgnore": False} for p in paths]
            return self._reply(200, {"files": files})
        if "/commit/" in self.path:
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    hub["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            oid = "0" * 40
            return self._reply(200, {"commitUrl": f"{base}/{hub['repo']}/commit/{oid}", "commitOid": oid})
        return self._reply(404, {"error": "not here"})

    def do_GET(self):  # huggingface_hub 0.3x asks whether the repo stores files with Xet before uploading
        hub = self.server.hub
        hub["requests"].append(("GET", self.path, self.headers.get("Authorization")))
        if "/revision/" in self.path:
            return self._reply(200, {"id": hub["repo"], "sha": "0" * 40, "xetEnabled": False, "siblings": []})
        return self._reply(404, {"error": "not here"})

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    server.hub = {"requests": [], "files": {}, "create": None, "refuse": False, "repo": "someone/tiny"}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(hub_constants, "ENDPOINT", url)  # read once at import by huggingface_hub
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
    yield server.hub
    server.shutdown()


def test_push_to_hub_uploads_every_exported_file_to_a_private_repo(tmp_path, fake_hub, capsys):
    run, _, _ = make_checkpointed_run(tmp_path / "run")
    out = tmp_path / "hf"
    assert main(["export", str(run), str(out), "--gguf", "--push-to-hub", "someone/tiny", "--private"]) == 0
    assert fake_hub["create"]["name"] == "tiny" and fake_hub["create"]["organization"] == "someone"
    assert fake_hub["create"].get("visibility") == "private" or fake_hub["create"].get("private") is True
    posts = [auth for method, _, auth in fake_hub["requests"] if method == "POST"]
    assert len(posts) >= 3 and all(auth == "Bearer hf_fake_token_for_tests" for auth in posts)
    local = {p.name: p.read_bytes() for p in out.iterdir()}
    assert fake_hub["files"] == local and "model-f32.gguf" in local
    meta = yaml.safe_load(fake_hub["card"].split("---")[1])  # the metadata the Hub validated
    assert meta["language"] == ["ru"] and meta["license"] == "mit" and meta["pipeline_tag"] == "text-generation"
    assert meta["library_name"] == "transformers" and "gguf" in meta["tags"]
    printed = capsys.readouterr().out
    assert "pushed" in printed and "someone/tiny" in printed


def test_a_refused_push_is_one_line_and_the_export_stays(tmp_path, fake_hub, capsys):
    run, _, _ = make_checkpointed_run(tmp_path / "run")
    fake_hub["refuse"] = True
    assert main(["export", str(run), str(tmp_path / "hf"), "--push-to-hub", "someone/tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "someone/tiny" in err and "refused" in err
    assert (tmp_path / "hf" / "model.safetensors").exists()  # the local export is complete; only the upload failed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--push-to-hub", "not a repo"], "not a valid repo id"),
        (["--push-to-hub", "tiny"], "give the owner too"),
        (["--private"], "only with --push-to-hub"),
    ],
)
def test_bad_push_arguments_are_one_line_before_anything_is_written(tmp_path, fake_hub, capsys, argv, message):
    run, _, _ = make_checkpointed_run(tmp_path / "run")
    assert main(["export", str(run), str(tmp_path / "hf"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "hf").exists() and not fake_hub["requests"]
