"""Reading and checking ``.tflite`` files (the TFLite FlatBuffer schema) and rewriting them with
the schema's object API: the leaf package every other one reads models through."""
