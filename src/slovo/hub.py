"""`slovo export ... --push-to-hub REPO`: upload an export folder to the Hugging Face Hub with huggingface_hub.

The token is huggingface_hub's own (`hf auth login` or `HF_TOKEN`), the endpoint its `HF_ENDPOINT`; slovo adds
nothing of its own, so a mirror or a private hub works as it does for every other Hub tool.
"""

from __future__ import annotations

from pathlib import Path

from slovo.errors import SlovoError, first_line


def check_repo_id(repo_id: str) -> None:
    """A malformed repo id is one line before anything is exported (huggingface_hub's own rule)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise SlovoError(f"--push-to-hub {repo_id}: not a valid repo id ({first_line(e)}); e.g. user/model") from None
    if "/" not in repo_id:
        raise SlovoError(f"--push-to-hub {repo_id}: give the owner too, e.g. user/{repo_id}")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection failures: httpx's under huggingface_hub >= 1 (requests' are OSErrors under 0.x)."""
    try:
        import httpx
    except ImportError:
        return ()
    return (httpx.HTTPError,)


def push_folder(folder: str | Path, repo_id: str, private: bool = False, message: str | None = None) -> str:
    """Create the model repo (if new) and upload `folder` as one commit; returns the commit's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type="model",
            commit_message=message or f"Upload {Path(folder).name} with slovo export",
        )
    except LocalTokenNotFoundError:
        raise SlovoError(f"--push-to-hub {repo_id}: no Hub token; run `hf auth login` or set HF_TOKEN") from None
    except ValueError as e:  # the Hub's check of the model card's YAML metadata
        raise SlovoError(f"--push-to-hub {repo_id}: the Hub refused README.md's metadata ({first_line(e)})") from None
    except (HfHubHTTPError, OSError, *_transport_errors()) as e:
        raise SlovoError(f"--push-to-hub {repo_id}: the Hub refused the upload ({first_line(e)})") from None
    return str(getattr(info, "commit_url", info))
