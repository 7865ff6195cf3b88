"""The chat template of the byte-level model: one role-tagged line per message.

    system: You are terse.
    user: What does os.path.join do?
    assistant: <generated text>

A prompt ends with ``"assistant: "``; the reply stops at end-of-text, at a new role line (``"\\nuser:"`` and the
like are added as stop strings) or at ``max_tokens``. Models whose tokenizer ships a chat template use that instead.
"""

from __future__ import annotations

ROLES = ("system", "developer", "user", "assistant", "tool")
GENERATION_PROMPT = "assistant: "
TURN_END = "\n"
ROLE_STOPS = ["\nuser:", "\nsystem:", "\nassistant:"]


def render(messages: list[dict[str, str]], generation_prompt: bool = True) -> str:
    """Messages as role-tagged lines, followed by the generation prompt."""
    body = "".join(f"{m['role']}: {m['content']}{TURN_END}" for m in messages)
    return body + (GENERATION_PROMPT if generation_prompt else "")


def new_part(rendered: str, transcript: str) -> str:
    """For a session: the part of ``rendered`` after the transcript when the client re-sent the whole history."""
    if transcript and rendered.startswith(transcript):
        return rendered[len(transcript) :]
    return rendered
