"""Rebuild ``seed_tasks.jsonl``: the bundled Self-Instruct seed tasks, written by this project.

Same format as Self-Instruct's ``seed_tasks.jsonl``: ``id``, ``name``, ``instruction``,
``instances`` (``input``, ``output``), ``is_classification``. Run
``python -m selfalign.data.bundled.build_seed_tasks``.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("seed_tasks.jsonl")

# (name, instruction, input, output, is_classification)
TASKS = [
    ("sentiment_review", "Decide whether the sentiment of the product review is positive or negative.", "The blender broke after two days and support never answered.", "Negative", True),
    ("spam_or_not", "Classify the email subject line as spam or not spam.", "You have WON a free cruise!!! Click now", "Spam", True),
    ("even_odd", "Tell whether the number is even or odd.", "347", "Odd", True),
    ("fact_opinion", "Label the sentence as a fact or an opinion.", "Water boils at 100 degrees Celsius at sea level.", "Fact", True),
    ("animal_class", "Say whether the animal is a mammal, bird, reptile, fish or amphibian.", "Salamander", "Amphibian", True),
    ("formal_informal", "Is the following message formal or informal?", "hey, u coming tonight or nah?", "Informal", True),
    ("question_type", "Classify the question as yes/no, factual or open-ended.", "Why do people enjoy horror movies?", "Open-ended", True),
    ("language_id", "Identify the language the sentence is written in.", "Je voudrais un café, s'il vous plaît.", "French", True),
    ("topic_news", "Assign the headline to one of: politics, sports, science, business.", "Researchers map the genome of the axolotl", "Science", True),
    ("grammar_ok", "Is the sentence grammatically correct? Answer yes or no.", "She don't like apples.", "No", True),
    ("summarize_paragraph", "Summarize the paragraph in one sentence.", "The town council met on Tuesday to discuss the new park. After a long debate about costs and noise, members voted 5 to 2 to approve the plan, with construction starting next spring.", "The council approved the new park 5-2, and building starts next spring.", False),
    ("rewrite_polite", "Rewrite the message so that it sounds polite.", "Send me the report now.", "Could you please send me the report when you have a moment?", False),
    ("translate_spanish", "Translate the sentence into Spanish.", "The library opens at nine.", "La biblioteca abre a las nueve.", False),
    ("haiku_topic", "Write a haiku about the given topic.", "autumn rain", "Cold autumn rain falls\nred leaves drift on quiet ponds\nthe year exhales slow", False),
    ("explain_child", "Explain the concept to a seven-year-old.", "Photosynthesis", "Plants catch sunlight with their leaves and use it, with water and air, to make their own food.", False),
    ("list_ideas_birthday", "Suggest five ideas for a child's birthday party on a small budget.", "", "1. A picnic in the park\n2. A treasure hunt at home\n3. A backyard movie night\n4. A craft party with paper and paint\n5. A pajama dance party", False),
    ("email_decline", "Write a short email declining a meeting invitation.", "Meeting: quarterly budget review, Friday 3pm", "Hi Sam,\nThank you for the invitation. Unfortunately I can't attend the budget review on Friday at 3pm. Could you share the notes afterwards?\nBest,\nAlex", False),
    ("math_word", "Solve the word problem and show your steps.", "A train travels 120 km in 2 hours. How far does it go in 5 hours at the same speed?", "Speed = 120 / 2 = 60 km/h. Distance = 60 x 5 = 300 km.", False),
    ("python_reverse", "Write a Python function that reverses a string.", "", "def reverse(s):\n    return s[::-1]", False),
    ("sql_query", "Write an SQL query for the request.", "Find the names of customers who live in Oslo, from table customers(name, city).", "SELECT name FROM customers WHERE city = 'Oslo';", False),
    ("regex_email", "Give a regular expression that matches simple email addresses.", "", "^[\\w.+-]+@[\\w-]+\\.[\\w.]+$", False),
    ("pros_cons", "List two pros and two cons of the option.", "Working from home", "Pros: no commute, flexible hours. Cons: isolation, blurred work-life boundaries.", False),
    ("recipe_steps", "Give step-by-step instructions for making the dish.", "Scrambled eggs", "1. Beat two eggs with a pinch of salt.\n2. Melt butter in a pan over low heat.\n3. Add the eggs and stir gently.\n4. Take them off the heat while still soft.", False),
    ("analogy", "Complete the analogy.", "Bird is to nest as bee is to ...", "Hive", False),
    ("antonyms", "Give an antonym for each word.", "generous, ancient, shallow", "stingy, modern, deep", False),
    ("extract_dates", "Extract every date mentioned in the text.", "The contract was signed on 3 May 2021 and expires on 2 May 2024.", "3 May 2021; 2 May 2024", False),
    ("title_story", "Suggest a title for the short story.", "A lighthouse keeper finds a message in a bottle written by his younger self.", "Letters from the Tide", False),
    ("convert_units", "Convert the quantity to the requested unit.", "5 miles to kilometres", "About 8.05 kilometres.", False),
    ("fix_code_bug", "Find and fix the bug in the code.", "def mean(xs):\n    return sum(xs) / len(xs) + 1", "The '+ 1' is wrong: def mean(xs):\n    return sum(xs) / len(xs)", False),
    ("tweet_announce", "Write a tweet announcing the event.", "Community garden opening, Saturday 10am, free seeds", "Our community garden opens this Saturday at 10am! Come dig in - free seeds for everyone. #GrowTogether", False),
    ("interview_questions", "Write three interview questions for the job.", "Junior data analyst", "1. How would you handle missing values in a dataset?\n2. Describe a chart you made that changed a decision.\n3. Which SQL joins do you use most, and why?", False),
    ("compare_two", "Compare the two things in two sentences.", "Tea and coffee", "Both are popular hot drinks with caffeine. Coffee usually has more caffeine and a bolder taste, while tea is lighter and comes in many more varieties.", False),
    ("paraphrase", "Paraphrase the sentence without changing its meaning.", "The meeting has been postponed until further notice.", "The meeting is delayed until we announce a new date.", False),
    ("story_continue", "Continue the story with two more sentences.", "The door creaked open, and a cat in a tiny hat walked in.", "It bowed politely and placed a letter on the table. The letter was addressed to me, in my grandmother's handwriting.", False),
    ("define_word", "Define the word in simple terms.", "Ephemeral", "Lasting for a very short time.", False),
    ("outline_essay", "Write an outline for an essay on the topic.", "The benefits of public libraries", "I. Introduction\nII. Free access to knowledge\nIII. Community space and programs\nIV. Digital inclusion\nV. Conclusion", False),
    ("trivia_question", "Write a trivia question with its answer about the topic.", "The solar system", "Q: Which planet has the most moons known today? A: Saturn.", False),
    ("advice_sleep", "Give three tips for sleeping better.", "", "Keep a regular bedtime, avoid screens for an hour before sleep, and keep the bedroom cool and dark.", False),
    ("rhymes", "Give three words that rhyme with the word.", "light", "night, bright, kite", False),
    ("sort_numbers", "Sort the numbers from smallest to largest.", "42, 7, 19, 3, 88", "3, 7, 19, 42, 88", False),
    ("json_from_text", "Turn the description into a JSON object.", "Anna is 31 years old and lives in Lisbon.", "{\"name\": \"Anna\", \"age\": 31, \"city\": \"Lisbon\"}", False),
    ("motivational", "Write a one-sentence motivational message for someone starting a new job.", "", "Every expert was once a beginner, so bring your curiosity and let yourself learn.", False),
    ("product_description", "Write a two-sentence product description.", "A reusable bamboo water bottle", "Stay refreshed with a bottle made from sustainable bamboo and stainless steel. It keeps drinks cold for 24 hours and fits in any bag.", False),
    ("travel_itinerary", "Plan a one-day itinerary for a visitor to the city.", "Rome", "Morning: Colosseum and Roman Forum. Lunch: pasta in Monti. Afternoon: Pantheon and Trevi Fountain. Evening: dinner in Trastevere.", False),
    ("slogan", "Create a slogan for the business.", "A bicycle repair shop", "We keep your wheels turning.", False),
    ("count_vowels", "Count the vowels in the word.", "encyclopedia", "6", False),
    ("next_in_sequence", "What comes next in the sequence? Explain the rule.", "2, 6, 18, 54", "162, because each number is three times the previous one.", False),
    ("apology_letter", "Write a brief apology to a customer for a late delivery.", "Order #5521, two days late", "Dear customer, we are sorry that order #5521 arrived two days late. We have refunded the shipping cost and are working to prevent this in future.", False),
    ("debate_argument", "Give one argument for and one against the statement.", "Homework should be banned in primary school.", "For: children need time to play and rest. Against: short homework builds study habits early.", False),
    ("shorten_sentence", "Make the sentence shorter while keeping its meaning.", "Due to the fact that it was raining heavily, we made the decision to stay inside.", "Because of the heavy rain, we stayed inside.", False),
    ("acronym", "Expand the acronym.", "NASA", "National Aeronautics and Space Administration", False),
    ("riddle", "Write a riddle whose answer is the given word.", "Shadow", "I follow you all day but vanish at night; the brighter the sun, the sharper my sight. What am I?", False),
    ("meal_plan", "Suggest a vegetarian dinner that can be cooked in 20 minutes.", "", "Chickpea curry: fry onion and garlic, add curry paste, canned chickpeas, tomatoes and spinach, simmer 10 minutes, serve with rice.", False),
    ("explain_error", "Explain what the error message means and how to fix it.", "TypeError: can only concatenate str (not \"int\") to str", "You added a number to a string. Convert the number first, for example 'Age: ' + str(age).", False),
    ("thank_you_note", "Write a short thank-you note to a teacher.", "", "Thank you for your patience and encouragement this year. Your lessons made me love science.", False),
]


def main() -> None:
    with OUT.open("w", encoding="utf-8") as f:
        for i, (name, inst, inp, out, cls) in enumerate(TASKS):
            row = {"id": f"selfalign_seed_{i}", "name": name, "instruction": inst,
                   "instances": [{"input": inp, "output": out}], "is_classification": cls}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(TASKS)} seed tasks to {OUT}")


if __name__ == "__main__":
    main()
