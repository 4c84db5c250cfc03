"""What a request to a model costs: its list prices and the request's estimated tokens.

A price is per million tokens, for the prompt (input) and for the answer (output); the answer's
length is not known before the call, so a request's cost is estimated with the model's expected
output tokens (a measured mean where one is known). The server, the catalogue of N models and the
spend controller all price requests here, so their dollars agree.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Characters per token of English text for GPT-style tokenisers: an estimate needs no tokenizer.
CHARS_PER_TOKEN = 4.0


class Price(BaseModel):
    """A model's list prices in US dollars per million tokens, and its expected answer length."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Finite: an infinite price passed ge=0 and made every cost infinite (an error naming no file).
    input_per_1m: float = Field(ge=0, allow_inf_nan=False)
    output_per_1m: float = Field(ge=0, allow_inf_nan=False)
    #: Mean output tokens of an answer (the model's measured mean where known).
    output_tokens: float = Field(default=300.0, gt=0, allow_inf_nan=False)

    @field_validator("input_per_1m", "output_per_1m", "output_tokens", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        # pydantic takes true and false (YAML's yes, no, on, off too) as 1 and 0: a price of $1 or $0.
        if isinstance(value, bool):
            raise ValueError(f"a number is wanted, not the boolean {value}")
        return value

    def request_cost(self, input_tokens: float) -> float:
        """Estimated dollars for one request with ``input_tokens`` prompt tokens."""
        return (input_tokens * self.input_per_1m + self.output_tokens * self.output_per_1m) / 1e6


def estimate_tokens(text: str) -> float:
    """Tokens of ``text`` estimated from its length (at least one)."""
    return max(1.0, len(text) / CHARS_PER_TOKEN)


def reported_tokens(value: Any) -> int | None:
    """A token count as an upstream's ``usage`` reports it, or None when it is no count: not a
    number, a boolean, negative, infinite, or beyond what a float holds exactly (a faulty upstream's
    hundreds of digits overflowed the cost product after the answer was given)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    # compared before any float conversion: an int of 400 digits cannot become one (OverflowError)
    return int(value) if 0 <= value < 2**53 else None
