"""The "paraphrase" split: held-out phrasings made only of words that training messages use.

The held-out phrasings of split="eval" (language.family) almost all carry a word no training
message has — "which hue does {ref} have?", "whereabouts is {ref}?", "just lose {ref}". A model that
learns language only from this world cannot know such a word, so that split measures two things at
once: whether the model understands a request worded in a new way, and whether it knows words it
never saw. These phrasings separate the first: each is new (no training phrasing, filled in, reads
as it — the same test the held-out ones pass) yet every word in it occurs in training messages.

    mmgen eval --split paraphrase      # the benchmark, on these phrasings and scenes of their own

Keyed by family name; every family has two (tests/test_language.py checks all of the above).
"""
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "sign": ('a sign with the text "{word}" on it', 'the word "{word}" on a sign'),
    "sign_color": ('{color} letters that say "{word}"', 'a sign with the word "{word}" in {color} letters'),
    "sign_plaque": ('a sign on a {plaque} plaque that says "{word}"', 'the text "{word}" on a {plaque} sign'),
    "sign_both": ('the text "{word}" in {color} letters on a {plaque} sign',
                  '{color} text saying "{word}" on a {plaque} plaque'),
    "terse_sign": ('sign with "{word}"', '"{word}" text'),
    "terse_sign_color": ('{color} letters "{word}"', '"{word}" text in {color}'),
    "terse_sign_plaque": ('"{word}", {plaque} sign', '{plaque} sign with "{word}"'),
    "terse_sign_both": ('{color} text "{word}" on {plaque} sign', '"{word}" in {color}, {plaque} sign'),
    "create": ("could you make me a picture of {desc}?", "please show me a picture of {desc}"),
    "create_terse": ("picture of {desc} pls", "new image: {desc}"),
    "background": ("with the background in {bg}", "and a {bg} background"),
    "terse_background": ("{bg} background pls", "background: {bg}"),
    "background_sign": ("{rest} with a {bg} background", "a picture with a {bg} background and {rest}"),
    "edit_recolor": ("can you change {ref} to {color}?", "I want {ref} to be {color}"),
    "edit_move": ("now put {ref} {loc}", "please take {ref} to the {to}"),
    "edit_add": ("can you put {obj} in there?", "please also draw {obj}"),
    "edit_remove": ("please take out {ref}", "can you get rid of {ref}?"),
    "edit_resize": ("I want {ref} to be {size}", "can you change the size of {ref} to {size}?"),
    "edit_grow": ("can you make {ref} a bit larger?", "please make {ref} a little bigger"),
    "edit_shrink": ("I want {ref} to be smaller", "can you reduce the size of {ref}?"),
    "edit_background": ("can you change the background to {bg}?", "I want the background to be {bg}"),
    "edit_word": ('can you change the word to "{word}"?', 'I want the sign to say "{word}"'),
    "edit_add_sign": ("can you put {sign} on it?", "please put {sign} in there"),
    "edit_plaque": ("I want the plaque to be {color}", "can you change the plaque to {color}?"),
    "edit_move_sign": ("can you put {ref} {band}?", "please take the sign {band}"),
    "edit_add_many": ("please put {objs} in it", "can you also draw {objs}?"),
    "edit_recolor_group": ("please change {group} to {color}", "I want {group} to be {color}"),
    "edit_remove_group": ("please get rid of {group}", "can you take out {group}?"),
    "edit_remove_one": ("please take out one of {group}", "can you get rid of one of {group}?"),
    "ask_color": ("which colour does {ref} have?", "can you tell me what colour {ref} is?"),
    "ask_shape": ("what kind of shape does {ref} have?", "can you tell me the shape of {ref}?"),
    "ask_count": ("can you tell me how many {things} there are?", "how many {things} did you draw?"),
    "ask_position": ("can you tell me where {ref} is?", "which part is {ref} in?"),
    "ask_word": ("can you tell me what the sign says?", "what word does the sign have?"),
    "ask_exists": ("do you see any {things}?", "is there {a_thing} there?"),
    "ask_check_color": ("did you color {ref} {color}?", "is {ref} {color}, right?"),
    "ask_background": ("which colour is behind the shapes?", "tell me what colour the background is"),
    "ask_describe": ("can you describe the picture?", "tell me what you drew"),
    "ask_what_at": ("what is drawn {loc}?", "can you tell me what is {loc}?"),
    "ask_locate": ("can you tell me where the {things} are?", "where have you put the {things}?"),
    "user_image": ("here is a picture I drew.", "look at this picture I made."),
    "variation": ("can you make another version?", "same shapes in a new layout please"),
    "greeting": ("good to see you again", "what is up?"),
    "praise": ("really good, thanks", "all good, I like it"),
    "farewell": ("that is it for now", "okay, that is all"),
    "told_scene": ("I made a picture with {scene}.", "imagine a picture of {scene}."),
}
