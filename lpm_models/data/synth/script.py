"""What two people say to each other: a small text bank and a seeded turn writer.

The writer only decides the words and their order (turns of 1-3 sentences, replies,
questions, backchannels); timing is decided once the lines are synthesized (see
``timeline``). Some lines carry a gesture the speaker performs while saying it
("No, not really." -> shake), which becomes a text-describable action in the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTIONS: tuple[str, ...] = ("nod", "shake", "smile", "tilt", "look_away")


@dataclass(frozen=True)
class Line:
    """One sentence: its text, role in the conversation and an optional gesture."""

    text: str
    kind: str  # "statement" | "question" | "reply" | "backchannel"
    gesture: str | None = None


TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # topic: (statements, questions)
    "weekend": (
        ("I spent most of Saturday fixing the old bike in the garage.",
         "We drove out to the lake and the water was still freezing.",
         "On Sunday I finally slept until ten, which felt amazing.",
         "My sister came over and we cooked a huge pot of soup.",
         "The market downtown had the best peaches I have tasted all year."),
        ("How was your weekend?", "Did you manage to get outside at all?"),
    ),
    "work": (
        ("The new project at work keeps changing every single week.",
         "We moved to a smaller office, so the meetings feel crowded.",
         "My manager wants the report by Thursday, which is tight.",
         "I started taking the early train to avoid the rush.",
         "Honestly the team is great, even when the deadlines are not."),
        ("How are things going at work?", "Is your team still working remotely?"),
    ),
    "travel": (
        ("Last spring we took the night train along the coast.",
         "The old town was full of tiny bakeries and narrow stairs.",
         "I lost my luggage for two days and had to buy a new jacket.",
         "The hotel window looked straight at the mountains.",
         "Next year I want to try walking part of a long trail."),
        ("Where would you travel if you had a free month?", "Have you been anywhere new lately?"),
    ),
    "food": (
        ("I have been trying to bake bread, but it keeps coming out flat.",
         "There is a new noodle place near the station that is really good.",
         "My grandmother makes a plum cake that nobody can copy.",
         "I eat far too much cheese when I am stressed.",
         "We grew tomatoes on the balcony and they actually worked."),
        ("What did you have for dinner yesterday?", "Do you cook much during the week?"),
    ),
    "music": (
        ("I went to a small concert in a church and the sound was incredible.",
         "My neighbour practices the trumpet every evening at seven.",
         "I have been listening to old jazz records while I work.",
         "We tried to start a band in school, but nobody could sing.",
         "The festival this summer sold out in about an hour."),
        ("What kind of music are you into these days?", "Do you still play the guitar?"),
    ),
    "books": (
        ("I just finished a long novel about a family of lighthouse keepers.",
         "The library near me has started lending tools as well as books.",
         "I read mostly on the train, so I read in short bursts.",
         "That mystery series gets better with every book.",
         "I keep buying books faster than I can read them."),
        ("Have you read anything good recently?", "Do you prefer paper books or a reader?"),
    ),
    "weather": (
        ("It rained every afternoon this week, right when I left the office.",
         "The first cold morning always surprises me.",
         "We had a huge storm and a tree fell across the road.",
         "I like the long evenings in summer the most.",
         "The wind off the river makes everything feel colder."),
        ("Is it still that hot where you are?", "Did the storm reach you too?"),
    ),
    "pets": (
        ("Our cat has decided that my keyboard is the warmest place in the house.",
         "The dog learned to open the back door by himself.",
         "We are looking after the neighbours' rabbits this week.",
         "My parrot says hello to everyone who calls.",
         "The vet said he needs to lose a little weight."),
        ("Do you have any pets?", "How is your dog doing these days?"),
    ),
    "sport": (
        ("I joined a running group that meets before sunrise.",
         "Our local team finally won a match after months.",
         "I tried climbing for the first time and my arms still hurt.",
         "Swimming is the only exercise I actually enjoy.",
         "We play football in the park every Wednesday evening."),
        ("Are you still going to the gym?", "Did you watch the game last night?"),
    ),
    "home": (
        ("We painted the kitchen a pale green and I love it.",
         "The heating broke on the coldest day of the year.",
         "I finally put up the shelves that sat in a box for months.",
         "Our street is so quiet at night that I can hear the river.",
         "The neighbours are building an extension, so it is noisy."),
        ("How is the new flat?", "Did you ever fix that leaking tap?"),
    ),
}

REPLIES: tuple[Line, ...] = (
    Line("Yes, exactly.", "reply", "nod"),
    Line("Oh, that sounds lovely.", "reply", "smile"),
    Line("Ha, that is so funny.", "reply", "smile"),
    Line("No, not really.", "reply", "shake"),
    Line("Hmm, I am not sure about that.", "reply", "tilt"),
    Line("Really? I did not know that.", "reply", "tilt"),
    Line("Let me think for a second.", "reply", "look_away"),
    Line("Well, it depends.", "reply", None),
    Line("That makes a lot of sense.", "reply", "nod"),
    Line("Oh no, that is terrible.", "reply", "shake"),
    Line("I know what you mean.", "reply", "nod"),
    Line("Good question.", "reply", "look_away"),
)

ANSWERS: tuple[Line, ...] = (  # openers of a turn that follows a question
    Line("Oh, good question.", "reply", "look_away"),
    Line("Hmm, let me think.", "reply", "look_away"),
    Line("Honestly, quite a lot.", "reply", "nod"),
    Line("Not much, to be honest.", "reply", "shake"),
    Line("Well, funny you should ask.", "reply", "smile"),
    Line("Where do I even start?", "reply", "tilt"),
)

BACKCHANNELS: tuple[Line, ...] = (
    Line("mm-hmm", "backchannel", "nod"),
    Line("right", "backchannel", "nod"),
    Line("yeah", "backchannel", "nod"),
    Line("uh-huh", "backchannel", None),
    Line("okay", "backchannel", None),
    Line("oh really", "backchannel", "tilt"),
    Line("wow", "backchannel", "smile"),
    Line("sure", "backchannel", None),
)


class ScriptWriter:
    """Seeded source of turns for a two-person conversation (persons 0 and 1)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.topics = list(TOPICS)
        self.topic = self._pick(self.topics)
        self.turns_on_topic = 0
        self.used: set[str] = set()
        self.last_was_question = False
        self.turns = 0

    def _pick(self, items: list) -> object:
        return items[int(self.rng.integers(len(items)))]

    def _unused(self, texts: tuple[str, ...]) -> list[str]:
        return [t for t in texts if t not in self.used]

    def _fresh(self, texts: tuple[str, ...]) -> str | None:
        """An unused text of ``texts`` (marked used), None when all were said."""
        unused = self._unused(texts)
        if not unused:
            return None
        text = self._pick(unused)
        self.used.add(text)
        return text

    def _switch_topic_if_due(self) -> None:
        statements = TOPICS[self.topic][0]
        if self.turns_on_topic < 2 + int(self.rng.integers(3)) and len(self._unused(statements)) >= 2:
            return
        fresh = [t for t in self.topics if t != self.topic and len(self._unused(TOPICS[t][0])) >= 3]
        if not fresh:  # a very long conversation: people start repeating themselves
            self.used.clear()
            fresh = [t for t in self.topics if t != self.topic]
        self.topic = self._pick(fresh)
        self.turns_on_topic = 0

    def next_turn(self) -> list[Line]:
        """Lines of the next turn: answer or reply (not when opening), 1-3 statements, maybe a question."""
        self._switch_topic_if_due()
        statements, questions = TOPICS[self.topic]
        lines: list[Line] = []
        if self.last_was_question:
            lines.append(self._pick(list(ANSWERS)))
        elif self.turns > 0 and self.rng.random() < 0.5:
            lines.append(self._pick(list(REPLIES)))
        for _ in range(1 + int(self.rng.integers(3))):
            text = self._fresh(statements)
            if text is None:
                break
            lines.append(Line(text, "statement"))
        question = self._fresh(questions) if self.rng.random() < 0.4 else None
        self.last_was_question = question is not None
        if question is not None:
            lines.append(Line(question, "question", "tilt" if self.rng.random() < 0.3 else None))
        if not lines:  # nothing new left on this topic: say something on another one
            self.turns_on_topic = 99
            return self.next_turn()
        self.turns_on_topic += 1
        self.turns += 1
        return lines

    def backchannel(self) -> Line:
        """A short listener response ("mm-hmm", "right", ...)."""
        return self._pick(list(BACKCHANNELS))
