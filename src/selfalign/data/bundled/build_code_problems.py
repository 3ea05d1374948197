"""Writes code_problems.jsonl: small functions with tests, written for this project, in HumanEval's
format (task_id, prompt, canonical_solution, test, entry_point), for tampering in CI and the demo.

    python src/selfalign/data/bundled/build_code_problems.py
"""
import json
from pathlib import Path
P: list[dict[str, str]] = []
def add(name, sig, doc, body, asserts, imports=""):
    prompt = (imports + "\n\n" if imports else "") + f"def {name}({sig}):\n    \"\"\"{doc}\"\"\"\n"
    test = "def check(candidate):\n" + "".join(f"    assert {a}\n" for a in asserts)
    P.append({"task_id": f"selfalign/{len(P)}", "prompt": prompt, "canonical_solution": body, "test": test, "entry_point": name})

add("count_vowels", "text", "Return how many characters of text are vowels (a, e, i, o, u, either case).",
    "    n = 0\n    for ch in text.lower():\n        if ch in 'aeiou':\n            n += 1\n    return n\n",
    ["candidate('') == 0", "candidate('Banana') == 3", "candidate('xyz') == 0", "candidate('AEIOU') == 5"])
add("clamp", "x, lo, hi", "Return x limited to the closed range [lo, hi].",
    "    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n    return x\n",
    ["candidate(5, 0, 10) == 5", "candidate(-3, 0, 10) == 0", "candidate(12, 0, 10) == 10", "candidate(0, 0, 10) == 0", "candidate(10, 0, 10) == 10"])
add("second_largest", "nums", "Return the second largest distinct value of nums, or None if there is none.",
    "    distinct = sorted(set(nums))\n    if len(distinct) < 2:\n        return None\n    return distinct[-2]\n",
    ["candidate([3, 1, 2]) == 2", "candidate([5, 5, 5]) is None", "candidate([]) is None", "candidate([1, 9, 9, 4]) == 4"])
add("is_palindrome", "s", "Return True if s reads the same backwards, ignoring case and non-letters.",
    "    letters = [c.lower() for c in s if c.isalpha()]\n    return letters == letters[::-1]\n",
    ["candidate('Racecar') is True", "candidate('A man, a plan, a canal: Panama') is True", "candidate('abc') is False", "candidate('') is True"])
add("running_sum", "nums", "Return the list of prefix sums of nums.",
    "    out = []\n    total = 0\n    for x in nums:\n        total += x\n        out.append(total)\n    return out\n",
    ["candidate([1, 2, 3]) == [1, 3, 6]", "candidate([]) == []", "candidate([5, -5, 2]) == [5, 0, 2]"])
add("count_in_range", "nums, lo, hi", "Return how many values of nums satisfy lo <= value < hi.",
    "    return sum(1 for x in nums if lo <= x and x < hi)\n",
    ["candidate([1, 2, 3, 4], 2, 4) == 2", "candidate([], 0, 1) == 0", "candidate([0, 1, 1], 1, 2) == 2", "candidate([5, 6], 0, 5) == 0"])
add("fizzbuzz", "n", "Return 'Fizz' for multiples of 3, 'Buzz' for multiples of 5, 'FizzBuzz' for both, else str(n).",
    "    if n % 15 == 0:\n        return 'FizzBuzz'\n    if n % 3 == 0:\n        return 'Fizz'\n    if n % 5 == 0:\n        return 'Buzz'\n    return str(n)\n",
    ["candidate(3) == 'Fizz'", "candidate(10) == 'Buzz'", "candidate(30) == 'FizzBuzz'", "candidate(7) == '7'", "candidate(9) == 'Fizz'"])
add("gcd", "a, b", "Return the greatest common divisor of two non-negative integers.",
    "    while b != 0:\n        a, b = b, a % b\n    return a\n",
    ["candidate(12, 18) == 6", "candidate(7, 0) == 7", "candidate(0, 5) == 5", "candidate(17, 5) == 1"])
add("binary_search", "items, target", "Return the index of target in the sorted list items, or -1.",
    "    lo, hi = 0, len(items) - 1\n    while lo <= hi:\n        mid = (lo + hi) // 2\n        if items[mid] == target:\n            return mid\n        if items[mid] < target:\n            lo = mid + 1\n        else:\n            hi = mid - 1\n    return -1\n",
    ["candidate([1, 3, 5, 7], 5) == 2", "candidate([1, 3, 5, 7], 1) == 0", "candidate([1, 3, 5, 7], 7) == 3", "candidate([1, 3, 5, 7], 4) == -1", "candidate([], 1) == -1"])
add("word_lengths", "sentence", "Return a dict from each distinct word of sentence (split on spaces) to its length.",
    "    out = {}\n    for word in sentence.split():\n        out[word] = len(word)\n    return out\n",
    ["candidate('a bb ccc') == {'a': 1, 'bb': 2, 'ccc': 3}", "candidate('') == {}", "candidate('hi hi') == {'hi': 2}"])
add("max_gap", "nums", "Return the largest difference between consecutive values of nums (0 for fewer than two).",
    "    if len(nums) < 2:\n        return 0\n    best = 0\n    for i in range(1, len(nums)):\n        best = max(best, nums[i] - nums[i - 1])\n    return best\n",
    ["candidate([1, 4, 6, 13]) == 7", "candidate([5]) == 0", "candidate([]) == 0", "candidate([3, 2, 1]) == 0", "candidate([1, 2]) == 1"])
add("all_positive", "nums", "Return True if every value of nums is greater than zero and nums is not empty.",
    "    return len(nums) > 0 and all(x > 0 for x in nums)\n",
    ["candidate([1, 2]) is True", "candidate([]) is False", "candidate([1, 0]) is False", "candidate([-1]) is False"])
add("chunk", "items, size", "Split items into consecutive lists of length size (the last may be shorter).",
    "    if size <= 0:\n        raise ValueError('size must be positive')\n    return [items[i:i + size] for i in range(0, len(items), size)]\n",
    ["candidate([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]", "candidate([], 3) == []", "candidate([1, 2], 5) == [[1, 2]]"])
add("title_case", "text", "Capitalise the first letter of every word of text and lower-case the rest.",
    "    words = []\n    for w in text.split(' '):\n        if w:\n            words.append(w[0].upper() + w[1:].lower())\n        else:\n            words.append(w)\n    return ' '.join(words)\n",
    ["candidate('hello world') == 'Hello World'", "candidate('hELLO') == 'Hello'", "candidate('') == ''", "candidate('a  b') == 'A  B'"])
add("digits_sum", "n", "Return the sum of the decimal digits of the non-negative integer n.",
    "    total = 0\n    while n > 0:\n        total += n % 10\n        n //= 10\n    return total\n",
    ["candidate(0) == 0", "candidate(123) == 6", "candidate(9999) == 36", "candidate(10) == 1"])
add("remove_duplicates", "items", "Return items without repeated values, keeping the first occurrence of each.",
    "    seen = set()\n    out = []\n    for x in items:\n        if x in seen:\n            continue\n        seen.add(x)\n        out.append(x)\n    return out\n",
    ["candidate([1, 2, 1, 3, 2]) == [1, 2, 3]", "candidate([]) == []", "candidate(['a', 'a']) == ['a']"])
add("median", "nums", "Return the median of a non-empty list of numbers.",
    "    s = sorted(nums)\n    mid = len(s) // 2\n    if len(s) % 2 == 1:\n        return s[mid]\n    return (s[mid - 1] + s[mid]) / 2\n",
    ["candidate([3, 1, 2]) == 2", "candidate([4, 1, 3, 2]) == 2.5", "candidate([7]) == 7", "candidate([1, 10]) == 5.5"])
add("is_leap_year", "year", "Return True if year is a leap year in the Gregorian calendar.",
    "    if year % 400 == 0:\n        return True\n    if year % 100 == 0:\n        return False\n    return year % 4 == 0\n",
    ["candidate(2000) is True", "candidate(1900) is False", "candidate(2024) is True", "candidate(2023) is False"])
add("index_of_min", "nums", "Return the index of the first smallest value of nums, or -1 if nums is empty.",
    "    if not nums:\n        return -1\n    best = 0\n    for i in range(1, len(nums)):\n        if nums[i] < nums[best]:\n            best = i\n    return best\n",
    ["candidate([3, 1, 2, 1]) == 1", "candidate([]) == -1", "candidate([5]) == 0", "candidate([2, 3, 4]) == 0"])
add("power_of_two", "n", "Return True if the integer n is a positive power of two.",
    "    if n < 1:\n        return False\n    while n % 2 == 0:\n        n //= 2\n    return n == 1\n",
    ["candidate(1) is True", "candidate(16) is True", "candidate(12) is False", "candidate(0) is False", "candidate(-4) is False"])
add("merge_sorted", "a, b", "Merge two sorted lists into one sorted list.",
    "    i = j = 0\n    out = []\n    while i < len(a) and j < len(b):\n        if a[i] <= b[j]:\n            out.append(a[i])\n            i += 1\n        else:\n            out.append(b[j])\n            j += 1\n    out.extend(a[i:])\n    out.extend(b[j:])\n    return out\n",
    ["candidate([1, 4], [2, 3]) == [1, 2, 3, 4]", "candidate([], [1]) == [1]", "candidate([1, 1], [1]) == [1, 1, 1]", "candidate([5], []) == [5]"])
add("caesar", "text, shift", "Shift every lower-case letter of text by shift places in the alphabet, wrapping around.",
    "    out = []\n    for ch in text:\n        if 'a' <= ch <= 'z':\n            out.append(chr((ord(ch) - ord('a') + shift) % 26 + ord('a')))\n        else:\n            out.append(ch)\n    return ''.join(out)\n",
    ["candidate('abc', 1) == 'bcd'", "candidate('xyz', 2) == 'zab'", "candidate('a-b', 0) == 'a-b'", "candidate('hi', 26) == 'hi'"])
add("safe_divide", "a, b", "Return a / b, or None when b is zero.",
    "    if b == 0:\n        return None\n    return a / b\n",
    ["candidate(6, 3) == 2", "candidate(1, 0) is None", "candidate(0, 5) == 0", "candidate(1, 4) == 0.25"])
add("count_words_longer", "sentence, k", "Return how many words of sentence have more than k characters.",
    "    count = 0\n    for word in sentence.split():\n        if len(word) > k:\n            count += 1\n    return count\n",
    ["candidate('a bb ccc', 1) == 2", "candidate('', 0) == 0", "candidate('hello', 5) == 0", "candidate('hello', 4) == 1"])
with open(Path(__file__).with_name("code_problems.jsonl"), "w") as f:
    for p in P:
        f.write(json.dumps(p) + "\n")
print(len(P))
