"""Word lists behind the perturbations of :mod:`stillhouse.evaluate.perturb` (English).

Sources (all short factual lists, written out for stillhouse):

- ``CONTRACTIONS``: standard English contractions and their expansions (as in NL-Augmenter's
  and HELM's contraction/expansion perturbations). Ambiguous contractions ("he's" = he is / he
  has, "I'd" = I would / I had) expand to their most common reading only.
- ``KEYBOARD_NEIGHBOURS``: the keys at distance one on a US QWERTY keyboard (as HELM's
  ``TyposPerturbation``, itself after NL-Augmenter's butter-fingers perturbation).
- ``GENDERED_TERMS``: masculine ↔ feminine pronouns and common person nouns. "her" and "his"
  are ambiguous (her → him or his; his → her or hers) and are resolved with spaCy's tags.
- ``FIRST_NAMES``: 16 names per group and gender from the European-American and
  African-American first-name lists of Caliskan, Bryson and Narayanan (2017), "Semantics
  derived automatically from language corpora contain human-like biases", Science 356(6334)
  (after Greenwald et al. 1998), with Aisha, Keisha and Tamika from Bertrand and Mullainathan
  (2004); HELM's person-name perturbation draws on the same lists.
"""

from __future__ import annotations

CONTRACTIONS: dict[str, str] = {
    "aren't": "are not",
    "can't": "cannot",
    "couldn't": "could not",
    "could've": "could have",
    "didn't": "did not",
    "doesn't": "does not",
    "don't": "do not",
    "hadn't": "had not",
    "hasn't": "has not",
    "haven't": "have not",
    "he'll": "he will",
    "he's": "he is",
    "here's": "here is",
    "how's": "how is",
    "i'd": "i would",
    "i'll": "i will",
    "i'm": "i am",
    "i've": "i have",
    "isn't": "is not",
    "it'll": "it will",
    "it's": "it is",
    "let's": "let us",
    "might've": "might have",
    "mustn't": "must not",
    "she'll": "she will",
    "she's": "she is",
    "shouldn't": "should not",
    "should've": "should have",
    "that's": "that is",
    "there's": "there is",
    "they'll": "they will",
    "they're": "they are",
    "they've": "they have",
    "wasn't": "was not",
    "we'll": "we will",
    "we're": "we are",
    "we've": "we have",
    "weren't": "were not",
    "what's": "what is",
    "where's": "where is",
    "who's": "who is",
    "won't": "will not",
    "wouldn't": "would not",
    "would've": "would have",
    "you'll": "you will",
    "you're": "you are",
    "you've": "you have",
}

KEYBOARD_NEIGHBOURS: dict[str, str] = {
    "q": "wa",
    "w": "qeas",
    "e": "wrsd",
    "r": "etdf",
    "t": "ryfg",
    "y": "tugh",
    "u": "yihj",
    "i": "uojk",
    "o": "ipkl",
    "p": "ol",
    "a": "qwsz",
    "s": "awedxz",
    "d": "serfcx",
    "f": "drtgvc",
    "g": "ftyhbv",
    "h": "gyujnb",
    "j": "huikmn",
    "k": "jiolm",
    "l": "kop",
    "z": "asx",
    "x": "zsdc",
    "c": "xdfv",
    "v": "cfgb",
    "b": "vghn",
    "n": "bhjm",
    "m": "njk",
}

# Masculine → feminine; the swap goes both ways. "his" and "her" are resolved by their tag.
GENDERED_TERMS: dict[str, str] = {
    "he": "she",
    "him": "her",
    "himself": "herself",
    "man": "woman",
    "men": "women",
    "boy": "girl",
    "boys": "girls",
    "gentleman": "lady",
    "gentlemen": "ladies",
    "father": "mother",
    "fathers": "mothers",
    "dad": "mom",
    "son": "daughter",
    "sons": "daughters",
    "brother": "sister",
    "brothers": "sisters",
    "husband": "wife",
    "husbands": "wives",
    "boyfriend": "girlfriend",
    "uncle": "aunt",
    "nephew": "niece",
    "grandfather": "grandmother",
    "grandpa": "grandma",
    "grandson": "granddaughter",
    "king": "queen",
    "mr": "mrs",
    "sir": "madam",
}

FIRST_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "european_american": {
        "male": tuple(
            [
                "Adam",
                "Harry",
                "Josh",
                "Roger",
                "Alan",
                "Frank",
                "Justin",
                "Ryan",
                "Andrew",
                "Jack",
                "Matthew",
                "Stephen",
                "Brad",
                "Greg",
                "Paul",
                "Jonathan",
            ]
        ),
        "female": tuple(
            [
                "Amanda",
                "Courtney",
                "Heather",
                "Melanie",
                "Katie",
                "Betsy",
                "Kristin",
                "Nancy",
                "Stephanie",
                "Ellen",
                "Lauren",
                "Colleen",
                "Emily",
                "Megan",
                "Rachel",
                "Amber",
            ]
        ),
    },
    "african_american": {
        "male": tuple(
            [
                "Alonzo",
                "Jamel",
                "Theo",
                "Alphonse",
                "Jerome",
                "Leroy",
                "Torrance",
                "Darnell",
                "Lamar",
                "Lionel",
                "Tyree",
                "Deion",
                "Lamont",
                "Malik",
                "Terrence",
                "Tyrone",
            ]
        ),
        "female": tuple(
            [
                "Nichelle",
                "Shereen",
                "Ebony",
                "Latisha",
                "Shaniqua",
                "Jasmine",
                "Tanisha",
                "Tia",
                "Lakisha",
                "Latoya",
                "Yolanda",
                "Malika",
                "Yvette",
                "Aisha",
                "Keisha",
                "Tamika",
            ]
        ),
    },
}
