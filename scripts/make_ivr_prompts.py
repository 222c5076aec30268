"""Regenerate the default IVR prompt sets (``ivr/prompts/en`` and ``ivr/prompts/zh``).

Each prompt is spoken by espeak-ng (``-v en`` / ``-v cmn``), its leading and trailing silence
is trimmed, and it is resampled to 8 kHz mono 16-bit PCM WAV (the narrowband rate of the
media engine, so prompts are not resampled again when played on G.711 legs).

The names are the ones :mod:`ivr.say` produces plus the prompts the default flows use. Run::

    .venv/bin/python scripts/make_ivr_prompts.py [--only en|zh]

Requires espeak-ng on the PATH (``apt-get install espeak-ng``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

HERE = Path(__file__).resolve().parent.parent / "ivr" / "prompts"  # where the sets live
RATE = 8000
SPEED_WPM = 165
TRIM_THRESHOLD = 300  # |sample| below this (about -40 dBFS) counts as silence
PAD_SECONDS = 0.03  # keep a little air so words do not click when concatenated

_EN_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_EN_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_EN_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_EN_ORDINALS = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "twenty-first",
    "twenty-second",
    "twenty-third",
    "twenty-fourth",
    "twenty-fifth",
    "twenty-sixth",
    "twenty-seventh",
    "twenty-eighth",
    "twenty-ninth",
    "thirtieth",
    "thirty-first",
]

FLOW_PROMPTS = {
    "en": {
        "welcome": "Welcome to Switchboard.",
        "main-menu": "Press 1 for sales. Press 2 for support.",
        "invalid": "Sorry, that is not a valid choice.",
        "timeout": "Sorry, we did not receive your choice.",
        "goodbye": "Thank you for calling. Goodbye.",
        "please-hold": "Please hold while we connect your call.",
        "enter-number": "Please enter your number, followed by the pound key.",
        "thank-you": "Thank you.",
        "survey": (
            "Please rate our service. Press 1 if you were satisfied, 2 if neutral, "
            "3 if unsatisfied."
        ),
        "voicemail-after-beep": "Please leave a message after the beep.",
        "queue-position": "You are caller number",
        "queue-wait": "Your estimated waiting time is about",
        "minutes": "minutes",
        "queue-periodic": "All our agents are busy. Please stay on the line.",
        "queue-callback": "To be called back without losing your place in line, press 5.",
        "callback-confirmed": "Thank you. We will call you back.",
        "callback-number": (
            "Press pound to be called back on this number, or enter another number "
            "followed by pound."
        ),
        # The mailbox owner's menu (ivr/mailbox.py).
        "vm-enter-mailbox": "Please enter your mailbox number, followed by the pound key.",
        "vm-enter-pin": "Please enter your PIN, followed by the pound key.",
        "vm-wrong-pin": "That PIN is not correct.",
        "vm-no-messages": "You have no messages.",
        "vm-you-have": "You have",
        "vm-new-messages": "new messages",
        "vm-and": "and",
        "vm-saved-messages": "saved messages.",
        "vm-message": "Message",
        "vm-received": "received",
        "vm-from": "from",
        "vm-unknown-caller": "an unknown caller",
        "vm-options": (
            "Press 1 to repeat, 2 to save, 3 for the next message, 7 to delete, pound to exit."
        ),
        "vm-saved": "Saved.",
        "vm-deleted": "Deleted.",
        "vm-no-more": "No more messages.",
        "oclock": "o'clock",
    },
    "zh": {
        "welcome": "欢迎致电。",
        "main-menu": "销售请按一，技术支持请按二。",
        "invalid": "对不起，您的输入无效。",
        "timeout": "对不起，我们没有收到您的选择。",
        "goodbye": "感谢您的来电，再见。",
        "please-hold": "请稍候，正在为您转接。",
        "enter-number": "请输入您的号码，以井号键结束。",
        "thank-you": "谢谢。",
        "survey": "请对我们的服务进行评价。满意请按一，一般请按二，不满意请按三。",
        "voicemail-after-beep": "请在提示音后留言。",
        "queue-position": "您的排队位置是",
        "queue-wait": "预计等待时间约为",
        "minutes": "分钟",
        "queue-periodic": "所有座席都在忙，请不要挂机。",
        "queue-callback": "如需回电并保留您的排队位置，请按五。",
        "callback-confirmed": "谢谢，我们会给您回电。",
        "callback-number": "回拨本号码请按井号键，或输入其他号码并以井号键结束。",
        "vm-enter-mailbox": "请输入您的信箱号码，以井号键结束。",
        "vm-enter-pin": "请输入密码，以井号键结束。",
        "vm-wrong-pin": "密码不正确。",
        "vm-no-messages": "您没有留言。",
        "vm-you-have": "您有",
        "vm-new-messages": "条新留言",
        "vm-and": "和",
        "vm-saved-messages": "条已保存的留言。",
        "vm-message": "第",
        "vm-received": "条留言，时间",
        "vm-from": "来电号码",
        "vm-unknown-caller": "未知号码",
        "vm-options": "重听请按一，保存请按二，下一条请按三，删除请按七，退出请按井号键。",
        "vm-saved": "已保存。",
        "vm-deleted": "已删除。",
        "vm-no-more": "没有更多留言了。",
        "dian": "点",
        "fen": "分",
    },
}


def prompt_texts(language: str) -> dict[str, str]:
    """Prompt name → text for one language."""
    if language == "en":
        texts = {str(i): word for i, word in enumerate(_EN_ONES)}
        texts |= dict(zip(_EN_TENS, _EN_TENS, strict=True))
        texts |= {"hundred": "hundred", "thousand": "thousand", "million": "million"}
        texts |= {f"month-{i}": m for i, m in enumerate(_EN_MONTHS, start=1)}
        texts |= {f"ord-{i}": o for i, o in enumerate(_EN_ORDINALS, start=1)}
        texts |= {"star": "star", "pound": "pound"}
    else:
        texts = {str(i): ch for i, ch in enumerate("零一二三四五六七八九")}
        texts |= {
            "shi": "十",
            "bai": "百",
            "qian": "千",
            "wan": "万",
            "yi": "亿",
            "liang": "两",
            "nian": "年",
            "yue": "月",
            "ri": "日",
            "star": "星号",
            "pound": "井号",
        }
    return texts | FLOW_PROMPTS[language]


def synthesize(text: str, voice: str, out: Path) -> None:
    """Speak ``text`` into ``out`` as trimmed 8 kHz mono 16-bit WAV."""
    from media.resample import resample

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(SPEED_WPM), "-w", str(raw), "--stdin"],
            input=text.encode(),
            check=True,
            timeout=60,
        )
        data, rate = soundfile.read(str(raw), dtype="int16", always_2d=True)
    pcm = data.mean(axis=1).astype(np.int16)
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > TRIM_THRESHOLD)
    if len(loud):
        pad = int(PAD_SECONDS * rate)
        pcm = pcm[max(0, loud[0] - pad) : loud[-1] + pad]
    pcm8 = np.asarray(resample(pcm, int(rate), RATE), dtype=np.int16)
    soundfile.write(str(out), pcm8, RATE, subtype="PCM_16")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("en", "zh"))
    parser.add_argument(
        "--names", nargs="+", metavar="NAME", help="regenerate only these prompts (e.g. new ones)"
    )
    args = parser.parse_args()
    voices = {"en": "en", "zh": "cmn"}
    for language, voice in voices.items():
        if args.only and language != args.only:
            continue
        folder = HERE / language
        folder.mkdir(exist_ok=True)
        texts = prompt_texts(language)
        if args.names:
            texts = {name: text for name, text in texts.items() if name in args.names}
        for name, text in texts.items():
            synthesize(text, voice, folder / f"{name}.wav")
        print(f"{language}: {len(texts)} prompts in {folder}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent.parent))  # run from anywhere: import media
    sys.exit(main())
