print("aibox")
