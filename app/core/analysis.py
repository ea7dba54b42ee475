"""The analysis a page shows: the input and the model pair, what the browser keeps (never tensors)."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.options import OptionError


@dataclass(frozen=True)
class Analysis:
    """One analysed input: what the browser stores (a few hundred bytes, never tensors). ``models`` is the name of
    the model pair it was analysed with (None: the server's default pair); the server checks it against its list."""

    text: str
    text_pair: str | None = None
    models: str | None = None

    def to_store(self) -> dict:
        return {"text": self.text, "text_pair": self.text_pair, "models": self.models}

    @classmethod
    def from_store(cls, data: object) -> Analysis | None:
        """The analysis the page holds; None when there is none yet. Anything but text is refused."""
        if not data:
            return None
        fields = [data.get(key) if isinstance(data, dict) else None for key in ("text", "text_pair", "models")]
        if not isinstance(data, dict) or not all(isinstance(value, str | None) for value in fields):
            raise OptionError("The page sent an input that is not text.", "Reload the page and analyse the text again.")
        text, pair, models = fields
        return cls(text=text, text_pair=pair or None, models=models or None) if text else None
