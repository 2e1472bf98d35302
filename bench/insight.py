"""Conversation insight: speed, memory and keyword accuracy on generated calls.

Makes a set of dual-channel 8 kHz calls with espeak-ng and sox (``tests/insight/studio.py``):
an agent's greeting, then turns of both sides drawn from sentences that carry a keyword
and distractor sentences (some with near-miss words: "number", "point", "counsel"), at
several speeds and Klatt voices; a tenth are voicemail greetings with a beep and a tenth
one-sided calls. Each call is analysed as the worker would (``attribution.insight.analyse``).

Prints, as markdown tables:
- CPU seconds per second of call audio (the real-time factor), of which the recogniser,
  model loading, and the process's peak resident memory (``ru_maxrss``);
- per keyword and in total, at sensitivities 0.3, 0.5 and 0.8: recall (a hit on the
  right side within 1.5 s of where the phrase was spoken) and false alarms, also per
  hour of audio;
- voicemail and one-sided detection.

The first pass (sensitivity 0.5) is timed; the others reuse its transcripts, since a
sensitivity changes only the keyphrase search and the scoring.

    python bench/insight.py [--calls 60] [--seed 17] [--folder DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from insight.studio import Call, Studio  # noqa: E402

from attribution.insight import analyse  # noqa: E402
from attribution.insight.keywords import keyphrase_search  # noqa: E402
from attribution.insight.transcriber import load_transcriber  # noqa: E402

KEYWORD_LINES = {
    "appointment": ["I would like to book an appointment for next week",
                    "Can I get an appointment on Friday morning",
                    "Is there an appointment available this afternoon"],
    "wrong number": ["Sorry, I think I have the wrong number",
                     "Oh, I must have dialed the wrong number",
                     "I am afraid you have the wrong number, this is a private home"],
    "quote": ["Can I get a quote for a new roof",
              "I need a quote for cleaning the carpets",
              "We can send you a written quote by email"],
    "emergency": ["This is an emergency, my basement is flooding",
                  "Do you offer emergency plumbing repairs",
                  "We have an emergency team on call all night"],
    "refund": ["I want a refund for my last order",
               "How do I ask for a refund",
               "We will process your refund today"],
    "cancel": ["I need to cancel my subscription",
               "Please cancel the order I placed yesterday",
               "I can cancel that for you right now"],
    "credit card": ["I will pay with my credit card",
                    "Do you take a credit card over the phone",
                    "Please read me the credit card number slowly"],
    "not interested": ["No thanks, I am not interested",
                       "I am not interested in that offer at all"],
}
DISTRACTORS = [
    "The weather is lovely this afternoon",
    "Can you give me the number for the main office",
    "What is the point of that extra fee",
    "That sounds about right to me",
    "My address is twelve oak street",
    "Hold on, let me find a pen",
    "What are your opening hours on Saturday",
    "I was told to call this number by a friend",
    "Can you repeat that please",
    "How much does the basic plan cost",
    "Thank you so much for your help",
    "I will think about it and call you back",
    "Is the manager in today",
    "We are open from nine to five on weekdays",
    "Let me transfer you to the right department",
    "Could you spell your last name for me",
    "Our technician can come out tomorrow",
    "The school counsel meets on Monday",
    "I am interested in the larger model",
    "Have a great day",
]
GREETINGS = [
    "Thank you for calling, how can I help you today",
    "Good morning, this is Dana speaking",
    "Hello, Smith plumbing, how may I help",
]
MACHINE = ["Hi, you have reached Pat, I am not available right now",
           "Please leave a message after the beep"]
SPEEDS = (125, 140, 155, 170)
VOICES = ("en-us+klatt", "en-us+klatt2", "en-us+klatt3")
SENSITIVITIES = (0.3, 0.5, 0.8)
NEAR = 1.5  # seconds between a hit and the truth for the hit to count


def _gap(rng: random.Random) -> float:
    return round(rng.uniform(0.4, 1.5), 2)


def make_calls(studio: Studio, count: int, rng: random.Random) -> list[tuple[str, Call, list[tuple]]]:
    """(kind, call, truth) for ``count`` calls; truth is (keyword, side, seconds) triples."""
    calls = []
    for n in range(count):
        speed = rng.choice(SPEEDS)
        voices = {"caller": rng.choice(VOICES), "agent": rng.choice(VOICES)}
        kind = "voicemail" if n % 10 == 3 else "one_sided" if n % 10 == 7 else "conversation"
        script, extra, at = [], [], 0.5
        if kind == "voicemail":
            for line in MACHINE:
                script.append(("agent", at, line))
                at += studio_seconds(studio, line, speed, voices["agent"]) + 0.5
            extra.append(("agent", at, studio.tone(1000, 0.8)))
            at += 1.5
            script.append(("caller", at, "Hi, it is Sam, please call me back"))
            at += studio_seconds(studio, script[-1][2], speed, voices["caller"]) + 1.0
        elif kind == "one_sided":
            for line in rng.sample(DISTRACTORS, 3):
                script.append(("caller", at, line))
                at += studio_seconds(studio, line, speed, voices["caller"]) + rng.uniform(2.0, 4.0)
        else:
            greeting = rng.choice(GREETINGS)
            script.append(("agent", at, greeting))
            at += studio_seconds(studio, greeting, speed, voices["agent"]) + _gap(rng)
            for turn in range(rng.randint(3, 6)):
                side = "caller" if turn % 2 == 0 else "agent"
                if rng.random() < 0.4:
                    line = rng.choice(KEYWORD_LINES[rng.choice(list(KEYWORD_LINES))])
                else:
                    line = rng.choice(DISTRACTORS)
                if any(line == s[2] and side == s[0] for s in script):
                    line = rng.choice(DISTRACTORS)
                    if any(line == s[2] and side == s[0] for s in script):
                        continue
                script.append((side, at, line))
                at += studio_seconds(studio, line, speed, voices[side]) + _gap(rng)
        call = studio.call(f"bench-{n}", script, total=round(at + 0.5, 2), extra=extra, speed=speed,
                           voices=voices)
        truth = []
        for side, _, line in script:
            for word in KEYWORD_LINES:
                if word in line.lower():
                    truth.append((word, side, call.spoken_at(studio, side, line, word)))
        calls.append((kind, call, truth))
    return calls


def studio_seconds(studio: Studio, text: str, speed: int, voice: str) -> float:
    from insight.studio import soxi_seconds

    return soxi_seconds(studio.say(text, speed, voice))


class TimedCache:
    """The bundled transcriber, timed, remembering each piece's words for later passes."""

    def __init__(self, engine):
        self.engine, self.name, self.rough = engine, engine.name, engine.rough
        self.cpu, self.memo = 0.0, {}

    def transcribe(self, samples, rate):
        key = (rate, samples.tobytes())
        if key not in self.memo:
            started = time.process_time()
            self.memo[key] = self.engine.transcribe(samples, rate)
            self.cpu += time.process_time() - started
        return self.memo[key]


def score(results: list[tuple[str, Call, list[tuple], dict]]) -> dict:
    found, missed, false = Counter(), Counter(), Counter()
    for _, _, truth, insight in results:
        hits = list(insight["keywords"])
        for word, side, at in truth:
            match = next((h for h in hits if h["word"] == word and h["side"] == side
                          and abs(h["at_seconds"] - at) <= NEAR), None)
            if match:
                hits.remove(match)
                found[word] += 1
            else:
                missed[word] += 1
        for hit in hits:
            false[hit["word"]] += 1
    return {"found": found, "missed": missed, "false": false}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--folder", help="keep the generated audio here (default: a temporary folder)")
    args = parser.parse_args()

    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    folder = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="insight-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    calls = make_calls(Studio(folder), args.calls, random.Random(args.seed))
    audio = sum(call.seconds for _, call, _ in calls)
    talk = sum(p.seconds for _, call, _ in calls for p in call.placed)
    print(f"generated {len(calls)} calls, {audio:.0f} s of audio ({talk:.0f} s of talk) "
          f"in {time.monotonic() - started:.0f} s; {sum(len(t) for _, _, t in calls)} keyword occurrences")

    loading = time.process_time()
    engine = TimedCache(load_transcriber())
    keyphrase_search()
    loading = time.process_time() - loading

    passes = {}
    for sensitivity in (0.5,) + tuple(s for s in SENSITIVITIES if s != 0.5):
        keywords = [{"word": word, "side": "either", "sensitivity": sensitivity} for word in KEYWORD_LINES]
        cpu = time.process_time()
        results = [(kind, call, truth, analyse(call.wav, keywords, transcriber=engine))
                   for kind, call, truth in calls]
        cpu = time.process_time() - cpu
        passes[sensitivity] = (results, score(results), cpu)
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    results, _, cpu = passes[0.5]
    print("\n| measure | value |\n|---|---|")
    print(f"| calls analysed | {len(calls)} ({audio:.0f} s of dual-channel audio) |")
    print(f"| CPU per second of audio (real-time factor) | {cpu / audio:.3f} |")
    print(f"| of which the recogniser | {engine.cpu / audio:.3f} |")
    print(f"| CPU per second of talk | {cpu / talk:.3f} |")
    print(f"| model loading (once per worker) | {loading:.2f} s CPU |")
    print(f"| peak resident memory | {rss_peak / 1024:.0f} MB (before loading: {rss_start / 1024:.0f} MB) |")

    print("\n| keyword | spoken | " + " | ".join(f"recall @{s} | false @{s}" for s in SENSITIVITIES) + " |")
    print("|---|---|" + "---|---|" * len(SENSITIVITIES))
    for word in list(KEYWORD_LINES) + ["all"]:
        cells = []
        for s in SENSITIVITIES:
            tally = passes[s][1]
            pick = (lambda c: sum(c.values())) if word == "all" else (lambda c, w=word: c[w])
            found, missed, false = pick(tally["found"]), pick(tally["missed"]), pick(tally["false"])
            cells += [f"{found / (found + missed):.0%}" if found + missed else "-", str(false)]
        spoken = pick(passes[0.5][1]["found"]) + pick(passes[0.5][1]["missed"])
        print(f"| {word} | {spoken} | " + " | ".join(cells) + " |")
    hours = audio / 3600
    per_hour = [f"{sum(passes[s][1]['false'].values()) / hours:.0f}" for s in SENSITIVITIES]
    print("| false alarms per hour of audio | " + "".join(f"| | {n} " for n in per_hour) + "|")

    kinds = Counter(kind for kind, _, _, _ in results)
    voicemail_hits = sum(1 for kind, _, _, i in results if kind == "voicemail" and i["voicemail"])
    voicemail_false = sum(1 for kind, _, _, i in results if kind != "voicemail" and i["voicemail"])
    sided_hits = sum(1 for kind, _, _, i in results if kind == "one_sided" and i["one_sided"])
    sided_false = sum(1 for kind, _, _, i in results if kind != "one_sided" and i["one_sided"])
    print("\n| detector | found | false alarms |\n|---|---|---|")
    print(f"| voicemail | {voicemail_hits}/{kinds['voicemail']} | {voicemail_false}/"
          f"{len(results) - kinds['voicemail']} |")
    print(f"| one-sided | {sided_hits}/{kinds['one_sided']} | {sided_false}/"
          f"{len(results) - kinds['one_sided']} |")
    errors = [abs(i["talk_seconds"][side] - call.talk(side)) / call.talk(side)
              for _, call, _, i in results for side in ("caller", "agent") if call.talk(side) > 0]
    errors.sort()
    print(f"\ntalk time per side vs the truth: median error {errors[len(errors) // 2]:.1%}, "
          f"worst {errors[-1]:.1%}, within 15% for {sum(e <= 0.15 for e in errors)}/{len(errors)} sides")


if __name__ == "__main__":
    main()
