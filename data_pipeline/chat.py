"""Conversation formats: a verbalized example's turns as the text a chat model is trained on.

A `Verbalized` is a list of segments, prompt (`is_target=False`) and target (`True`); consecutive
segments of one kind are one turn, so a single-turn task is (user, assistant) and an instruction
row alternates human and gpt turns. `plain` keeps the segments as they are (the codec ends the
sample with `</s>`). `vicuna_v1` is LLaVA-1.5's conversation (`conv_vicuna_v1` in the LLaVA code):

  {system} USER: {turn 1} ASSISTANT: {answer 1}</s>USER: {turn 2} ASSISTANT: {answer 2}</s>

The loss falls on each answer and its `</s>` (LLaVA masks everything up to and including
"ASSISTANT:"), and a prompt to generate from ends with "ASSISTANT:". `chat_template` is the same
format as a Jinja template for Hugging Face, so `apply_chat_template` on an exported model gives
the ids we trained on.
"""
from __future__ import annotations

from typing import Sequence

from lcbm_jax.errors import UserError

FORMATS = ("plain", "vicuna_v1")
VICUNA_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the human's questions.")


def check_format(name: str) -> str:
  if name not in FORMATS:
    raise UserError(f"unknown conversation format {name!r}; choose one of {', '.join(FORMATS)} "
                    "(--config.data.conversation)")
  return name


def turns(texts: Sequence[str], is_target: Sequence[bool]) -> list[tuple[bool, str]]:
  """(is_assistant, text) per turn: consecutive segments of one kind joined, surrounding whitespace
  dropped (a template's own separators between segments are the format's business)."""
  out: list[tuple[bool, list[str]]] = []
  for text, flag in zip(texts, is_target):
    if out and out[-1][0] == bool(flag):
      out[-1][1].append(text)
    else:
      out.append((bool(flag), [text]))
  return [(flag, "".join(parts).strip()) for flag, parts in out]


def render(fmt: str, texts: Sequence[str], is_target: Sequence[bool], eos_text: str,
           ) -> tuple[list[str], list[bool], bool]:
  """Segments in conversation format `fmt`: (texts, is_target, ends_with_eos). A conversation that
  ends with a user turn ends with the generation prompt "ASSISTANT:" (and no `</s>` of its own)."""
  if fmt == "plain":
    return list(texts), list(is_target), False
  check_format(fmt)
  out_texts, out_flags = [VICUNA_SYSTEM + " "], [False]
  last_assistant = False
  for assistant, text in turns(texts, is_target):
    if assistant:
      out_texts += ["ASSISTANT: ", text, eos_text]
      out_flags += [False, True, True]
    else:
      out_texts.append(f"USER: {text} ")
      out_flags.append(False)
    last_assistant = assistant
  if not last_assistant:
    out_texts.append("ASSISTANT:")
    out_flags.append(False)
  return out_texts, out_flags, last_assistant


def chat_template(fmt: str, *, bos: bool) -> str | None:
  """The Jinja chat template of `fmt` for transformers (None for plain). `bos`: the tokenizer puts
  `<s>` before a text, which `apply_chat_template` leaves to the template."""
  if fmt == "plain":
    return None
  check_format(fmt)
  content = ("{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
             "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>\\n' }}{% endfor %}"
             "{{ (message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') "
             "| join(' ')) | trim }}{% endif %}")
  return ("{{ bos_token if " + ("true" if bos else "false") + " else '' }}"
          "{% if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] | trim }}"
          "{% else %}" + VICUNA_SYSTEM + "{% endif %} "
          "{% for message in messages if message['role'] != 'system' %}"
          "{% if message['role'] == 'user' %}USER: " + content + " "
          "{% else %}ASSISTANT: {% generation %}" + content + "{{ eos_token }}{% endgeneration %}{% endif %}"
          "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")
