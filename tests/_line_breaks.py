"""Text that ``str.splitlines()`` breaks into several lines although a file line holds it whole.

Besides ``\\n`` and ``\\r``, ``splitlines`` ends a line at U+2028, U+2029, U+0085 and the controls
``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``. ``json.dumps(ensure_ascii=False)`` writes the first three
as they are (the controls it escapes), so a JSON string holding them stays on one file line.
"""

BREAKS = "\u2028\u2029\u0085\x1c\x1d\x1e\x0b\x0c"
#: A prompt or answer with every such character in it.
TEXT = "one\u2028two\u2029three\u0085four\x1cfive\x1dsix\x1eseven\x0beight\x0cnine"
